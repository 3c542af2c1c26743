import { eq } from "drizzle-orm";
import type { Config } from "../config/config.ts";
import { createDatasetRepository } from "../dataset/dataset.repository.ts";
import { datasets } from "../dataset/dataset.tables.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { summaryLine } from "../dataset/manifest.ts";
import type { Database } from "../db/client.ts";
import { type BaseModel, createModelsRepository } from "../models/models.repository.ts";
import { estimateRun, formatDuration, readTrainerSettings, type TrainerSettings } from "./plan.ts";
import { createRunsRepository, type TrainingRun } from "./runs.repository.ts";
import type { RunConfig } from "./training.tables.ts";

export class NothingToTrainError extends Error {}

/** What a run would be, shown for confirmation before it is queued. */
export type RunPlan = {
  dataset: { id: number; manifest: Manifest };
  base: BaseModel;
  config: RunConfig;
  settings: TrainerSettings;
  estimate: { steps: number; seconds: number | null };
  workers: { id: string; hardware: Record<string, unknown> }[];
};

/** The latest ready dataset (or `datasetId`), the default base model, the configured trainer config and an estimate. */
export async function planRun(
  database: Database,
  config: Config,
  options: { datasetId?: number | undefined } = {},
): Promise<RunPlan> {
  const dataset = options.datasetId
    ? (await database.db.select().from(datasets).where(eq(datasets.id, options.datasetId)))[0]
    : await createDatasetRepository(database).latestReady();
  if (!dataset || dataset.status !== "ready" || !dataset.manifest) {
    throw new NothingToTrainError(
      options.datasetId
        ? `dataset ${options.datasetId} is not a ready dataset`
        : "there is no dataset yet: build one first (`twin dataset`, or /dataset in the bot)",
    );
  }
  const base = await createModelsRepository(database).defaultModel();
  if (!base)
    throw new NothingToTrainError("no base model is registered: `twin model add <gguf> [--hf <id>]`");
  const runConfig: RunConfig = { file: config.training.configFile, set: config.training.overrides };
  const settings = readTrainerSettings(runConfig);
  const manifest = dataset.manifest as Manifest;
  const runs = createRunsRepository(database);
  const counts = manifest.counts;
  const trainTokens = Math.round(
    (counts.tokensEstimate * counts.trainExamples) / Math.max(1, counts.examples),
  );
  const estimate = estimateRun({
    trainTokens,
    settings,
    secondsPerStep: await runs.secondsPerStep(base.id, runConfig.file),
  });
  const workers = (await runs.liveWorkers(config.training.staleSeconds)).map((w) => ({
    id: w.id,
    hardware: w.hardware,
  }));
  return { dataset: { id: dataset.id, manifest }, base, config: runConfig, settings, estimate, workers };
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
  const time = plan.estimate.seconds
    ? `about ${formatDuration(plan.estimate.seconds)} (paced by the last run)`
    : "unknown until the first steps (no earlier run on this base to time it by); the status shows an ETA";
  const worker = plan.workers[0]
    ? `worker ${plan.workers[0].id} (${describeHardware(plan.workers[0].hardware)})`
    : "a local worker on this machine";
  return [
    `Dataset ${plan.dataset.id}: ${summaryLine(plan.dataset.manifest)}.`,
    `${n(counts.trainExamples)} training and ${n(counts.evalExamples)} held-out examples, ~${n(counts.tokensEstimate)} tokens.`,
    `Base: ${plan.base.name}. Method: ${plan.settings.method}, config ${plan.config.file}${overrides.length ? ` with ${overrides.join(", ")}` : ""}.`,
    `${n(plan.estimate.steps)} steps of ${n(plan.settings.tokensPerBatch)} tokens; time: ${time}.`,
    `Trains on: ${worker}.`,
  ].join("\n");
}

export function describeHardware(hardware: Record<string, unknown>): string {
  const gpus = (hardware.gpus as { name: string; memory_gb: number }[] | undefined) ?? [];
  if (gpus.length > 0) return `${gpus.length}× ${gpus[0]?.name} ${gpus[0]?.memory_gb} GB`;
  return `CPU, ${hardware.cpus ?? "?"} cores`;
}
