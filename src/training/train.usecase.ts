import os from "node:os";
import { eq } from "drizzle-orm";
import type { Config } from "../config/config.ts";
import { createDatasetRepository } from "../dataset/dataset.repository.ts";
import { datasets } from "../dataset/dataset.tables.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { summaryLine } from "../dataset/manifest.ts";
import type { Database } from "../db/client.ts";
import { readGgufFacts } from "../models/gguf-facts.ts";
import { type BaseModel, createModelsRepository } from "../models/models.repository.ts";
import {
  estimateRun,
  formatDuration,
  priorSecondsPerStep,
  readTrainerSettings,
  type TrainerSettings,
} from "./plan.ts";
import { createRunsRepository, type TrainingRun } from "./runs.repository.ts";
import type { RunConfig } from "./training.tables.ts";

export class NothingToTrainError extends Error {}
/** No dataset was built yet: the caller may offer to build one first. */
export class NoDatasetError extends NothingToTrainError {}

/** What a run would be, shown for confirmation before it is queued. */
export type RunPlan = {
  dataset: { id: number; manifest: Manifest };
  base: BaseModel;
  config: RunConfig;
  settings: TrainerSettings;
  estimate: { steps: number; seconds: number | null };
  /** Where the time comes from: an earlier run on this base and config, or the rough prior. */
  pace: "measured" | "rough";
  workers: { id: string; hardware: Record<string, unknown> }[];
  /** Processes the worker trains with: one per GPU for full fine-tuning, else one. */
  processes: number;
};

export type TrainMethod = "lora" | "full";

/** GPUs of the first live worker (pure): full fine-tuning is offered when there are several. */
export function workerGpus(workers: RunPlan["workers"]): number {
  return (workers[0]?.hardware.gpus as unknown[] | undefined)?.length ?? 0;
}

/**
 * The latest ready dataset (or `datasetId`), the default base model, the configured trainer config
 * (LoRA's, or full fine-tuning's for `method: "full"`) and an estimate.
 */
export async function planRun(
  database: Database,
  config: Config,
  options: { datasetId?: number | undefined; method?: TrainMethod | undefined } = {},
): Promise<RunPlan> {
  const dataset = options.datasetId
    ? (await database.db.select().from(datasets).where(eq(datasets.id, options.datasetId)))[0]
    : await createDatasetRepository(database).latestReady();
  if (dataset?.status !== "ready" || !dataset.manifest) {
    if (options.datasetId)
      throw new NothingToTrainError(`dataset ${options.datasetId} is not a ready dataset`);
    throw new NoDatasetError(
      "there is no dataset yet: build one first (`twin dataset`, or /dataset in the bot)",
    );
  }
  if ((dataset.manifest as Manifest).counts.trainExamples === 0) {
    throw new NothingToTrainError(
      `dataset ${dataset.id} has no training examples (is the history imported? for group chats build it with --groups)`,
    );
  }
  const base = await createModelsRepository(database).defaultModel();
  if (!base)
    throw new NothingToTrainError("no base model is registered: `twin model add <gguf> [--hf <id>]`");
  const file = options.method === "full" ? config.training.fullConfigFile : config.training.configFile;
  const runConfig: RunConfig = { file, set: config.training.overrides };
  const settings = readTrainerSettings(runConfig);
  const manifest = dataset.manifest as Manifest;
  const runs = createRunsRepository(database);
  const counts = manifest.counts;
  const trainTokens = Math.round(
    (counts.tokensEstimate * counts.trainExamples) / Math.max(1, counts.examples),
  );
  const workers = (await runs.liveWorkers(config.training.staleSeconds)).map((w) => ({
    id: w.id,
    hardware: w.hardware,
  }));
  const measured = await runs.secondsPerStep(base.id, runConfig.file);
  const facts = measured ? undefined : await readGgufFacts(base.ggufPath).catch(() => undefined);
  const gpus = workerGpus(workers);
  const cpus = Number(workers[0]?.hardware.cpus ?? os.availableParallelism());
  const processes = settings.method === "full" ? settings.processes || Math.max(1, gpus) : 1;
  const rough =
    facts?.kind === "model"
      ? priorSecondsPerStep({
          parameters: [...facts.shapes.values()].reduce(
            (sum, dims) => sum + dims.reduce((a, b) => a * b, 1),
            0,
          ),
          tokensPerBatch: settings.tokensPerBatch,
          hardware: { gpus, cpus },
          method: settings.method,
        })
      : undefined;
  const estimate = estimateRun({ trainTokens, settings, secondsPerStep: measured ?? rough, processes });
  return {
    dataset: { id: dataset.id, manifest },
    base,
    config: runConfig,
    settings,
    estimate,
    pace: measured ? "measured" : "rough",
    workers,
    processes,
  };
}

export function queueRun(database: Database, plan: RunPlan, chatId?: number): Promise<TrainingRun> {
  return createRunsRepository(database).queue({
    datasetId: plan.dataset.id,
    baseModelId: plan.base.id,
    config: plan.config,
    method: plan.settings.method,
    estimate: plan.estimate,
    chatId,
  });
}

/** The confirmation text: dataset, base, method, steps and the time it should take (pure). */
export function describePlan(plan: RunPlan): string {
  const counts = plan.dataset.manifest.counts;
  const n = (value: number) => value.toLocaleString("en-US");
  const overrides = Object.entries(plan.config.set).map(([key, value]) => `${key}=${value}`);
  const time = !plan.estimate.seconds
    ? "unknown until the first steps run; the status shows an ETA"
    : plan.pace === "measured"
      ? `about ${formatDuration(plan.estimate.seconds)} (at the last run's pace)`
      : `roughly ${formatDuration(plan.estimate.seconds)} (from the model's size; the status shows a measured ETA)`;
  const worker = plan.workers[0]
    ? `worker ${plan.workers[0].id} (${describeHardware(plan.workers[0].hardware)})`
    : "a local worker on this machine";
  return [
    `Dataset ${plan.dataset.id}: ${summaryLine(plan.dataset.manifest)}.`,
    `${n(counts.trainExamples)} training and ${n(counts.evalExamples)} held-out examples, ~${n(counts.tokensEstimate)} tokens.`,
    `Base: ${plan.base.name}. Method: ${describeMethod(plan)}, config ${plan.config.file}${overrides.length ? ` with ${overrides.join(", ")}` : ""}.`,
    `${n(plan.estimate.steps)} steps of ${plan.processes > 1 ? `${plan.processes} × ` : ""}${n(plan.settings.tokensPerBatch)} tokens; time: ${time}.`,
    `Trains on: ${worker}.`,
  ].join("\n");
}

function describeMethod(plan: RunPlan): string {
  if (plan.settings.method !== "full") return plan.settings.method;
  return `full fine-tuning (every weight${plan.processes > 1 ? `, sharded over ${plan.processes} GPUs` : ""}; the model goes to the model store)`;
}

export function describeHardware(hardware: Record<string, unknown>): string {
  const gpus = (hardware.gpus as { name: string; memory_gb: number }[] | undefined) ?? [];
  if (gpus.length > 0) return `${gpus.length}× ${gpus[0]?.name} ${gpus[0]?.memory_gb} GB`;
  return `CPU, ${hardware.cpus ?? "?"} cores`;
}
