import os from "node:os";
import type { App } from "../app.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { summaryLine } from "../dataset/manifest.ts";
import { recordedMemory } from "../dataset/memory-turn.ts";
import { readGgufFacts } from "../models/gguf-facts.ts";
import type { BaseModel } from "../models/models.repository.ts";
import { plural } from "../plural.ts";
import { chooseTrainConfig, parametersFromName, type WorkerGpu } from "./config-choice.ts";
import {
  describeEstimate,
  estimateRun,
  measuredPace,
  needsGpu,
  type Pace,
  priorPace,
  readTrainerSettings,
  type TrainerSettings,
} from "./plan.ts";
import type { TrainingRun } from "./runs.repository.ts";
import { NoDatasetError, NothingToTrainError, TrainPlanError } from "./training.errors.ts";
import type { RunConfig, RunEstimate } from "./training.tables.ts";

/** What a run would be, shown for confirmation before it is queued. */
export type RunPlan = {
  dataset: { id: number; manifest: Manifest };
  base: BaseModel;
  config: RunConfig;
  settings: TrainerSettings;
  /** Steps, seconds with a range, and the parts they add up (the pace: measured or rough). */
  estimate: RunEstimate;
  workers: { id: string; hardware: Record<string, unknown> }[];
  /**
   * This machine's load average and cores, when a local worker will train here: other work on the
   * same cores slows training down (on 2 cores at a load of 4–5, a 10-step run took 3.5× as long).
   */
  load?: { average: number; cpus: number } | undefined;
  /** Processes the worker trains with: one per GPU for full fine-tuning, else one. */
  processes: number;
  /** Which worker may take it (`any` unless asked). */
  target: RunTarget;
};

/** `local` (this machine's worker), `remote:<host>` (`twin worker remote`) or `any`. */
export type RunTarget = "any" | "local" | `remote:${string}`;

/** A run target as typed (`--on`, a bot button), or undefined when it is none (pure). */
export function parseRunTarget(text: string): RunTarget | undefined {
  if (text === "any" || text === "local") return text;
  if (/^remote:[^\s:/@]+$/.test(text)) return text as RunTarget;
  return undefined;
}

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
  { config, repositories }: Pick<App, "config" | "repositories">,
  options: {
    datasetId?: number | undefined;
    method?: TrainMethod | undefined;
    target?: RunTarget | undefined;
    /** The machine that will train it, when known before any worker of it registered (a remote's preflight). */
    hardware?: { gpus: WorkerGpu[]; cpus: number } | undefined;
  } = {},
): Promise<RunPlan> {
  const dataset = await repositories.dataset.readyDataset(options.datasetId);
  if (!dataset) {
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
  const base = await repositories.models.defaultModel();
  if (!base)
    throw new NothingToTrainError("no base model is registered: `twin model add <gguf> [--hf <id>]`");
  const { runs } = repositories;
  const workers = (await runs.liveWorkers(config.training.staleSeconds)).map((w) => ({
    id: w.id,
    hardware: w.hardware,
  }));
  const facts = await readGgufFacts(base.ggufPath).catch(() => undefined);
  const parameters =
    facts?.kind === "model"
      ? [...facts.shapes.values()].reduce((sum, dims) => sum + dims.reduce((a, b) => a * b, 1), 0)
      : parametersFromName(base.hfSource ?? "");
  // The configured config, else the one written for this base's size and the worker's GPUs
  // (config-choice.ts), else a refusal that names the config to set.
  const method = options.method === "full" ? "full" : "lora";
  if (method === "full" && options.target?.startsWith("remote:")) {
    throw new TrainPlanError(
      "full fine-tuning stays with the model store (TWIN_MODEL_STORE: its checkpoints and model are gigabytes): train it on a worker here, or LoRA on the remote",
    );
  }
  const file = chooseTrainConfig({
    method,
    configured: method === "full" ? config.training.fullConfigFile : config.training.configFile,
    base: { name: base.name, parameters },
    gpus: options.hardware?.gpus ?? (workers[0]?.hardware.gpus as WorkerGpu[] | undefined) ?? [],
  });
  const manifest = dataset.manifest as Manifest;
  let runConfig: RunConfig = { file, set: config.training.overrides };
  let settings = await readTrainerSettings(runConfig, { python: config.training.python });
  // A memory dataset's examples carry the memory turn on top of --max-tokens: a packed row must hold
  // the longest, or the trainer refuses the run. Raised here unless the user chose the row length.
  const longest = longestExampleTokens(manifest);
  if (longest > settings.tokensPerBatch && runConfig.set.tokens_per_batch === undefined) {
    runConfig = { file, set: { ...runConfig.set, tokens_per_batch: String(Math.ceil(longest / 256) * 256) } };
    settings = await readTrainerSettings(runConfig, { python: config.training.python });
  }
  const counts = manifest.counts;
  const perExample = counts.tokensEstimate / Math.max(1, counts.examples);
  const trainTokens = Math.round(perExample * counts.trainExamples);
  const evalExamples = Math.min(counts.evalExamples, settings.maxEvalExamples || Number.POSITIVE_INFINITY);
  const gpus = options.hardware?.gpus.length ?? workerGpus(workers);
  const cpus = options.hardware?.cpus ?? Number(workers[0]?.hardware.cpus ?? os.availableParallelism());
  const processes = settings.method === "full" ? settings.processes || Math.max(1, gpus) : 1;
  // The prior from the model's size, with the parts the latest run on this base and config timed
  // put over it: the steps, the evaluation passes, the setup and the export as they took.
  const prior =
    parameters !== undefined
      ? priorPace({
          parameters,
          tokensPerBatch: settings.tokensPerBatch,
          evalTokens: perExample * evalExamples,
          datasetTokens: counts.tokensEstimate,
          hardware: { gpus, cpus },
          method: settings.method,
          processes,
        })
      : undefined;
  const timed = await runs.lastTimedRun(base.id, runConfig.file);
  const measured = timed
    ? measuredPace(timed, { tokensPerBatch: settings.tokensPerBatch, evalExamples })
    : undefined;
  const whole = (part: Partial<Pace>): part is Pace =>
    part.evalPass !== undefined && part.checkpoint !== undefined;
  const pace = measured && (prior || whole(measured)) ? ({ ...prior, ...measured } as Pace) : prior;
  const estimate = estimateRun({ trainTokens, settings, evalExamples, pace, processes });
  const local =
    workers.length === 0 && config.training.worker !== "external" && !options.target?.startsWith("remote:");
  return {
    load: local ? { average: os.loadavg()[0] ?? 0, cpus } : undefined,
    dataset: { id: dataset.id, manifest },
    base,
    config: runConfig,
    settings,
    estimate,
    workers,
    processes,
    target: options.target ?? "any",
  };
}

/** The most tokens one of a dataset's examples may take (pure): its split length, and its memory turn's budget. */
export function longestExampleTokens(manifest: Pick<Manifest, "settings">): number {
  const memory = recordedMemory(manifest.settings);
  // The memory turn's own role line and the newline after it come on top of its budget.
  return manifest.settings.maxTokens + (memory?.enabled ? memory.maxTokens + 16 : 0);
}

export function queueRun(
  { repositories }: Pick<App, "repositories">,
  plan: RunPlan,
  chatId?: number,
): Promise<TrainingRun> {
  return repositories.runs.queue({
    datasetId: plan.dataset.id,
    baseModelId: plan.base.id,
    config: plan.config,
    method: plan.settings.method,
    estimate: plan.estimate,
    target: plan.target,
    needsGpu: needsGpu(plan.settings),
    chatId,
  });
}

/** The confirmation text: dataset, base, method, steps and the time it should take (pure). */
export function describePlan(plan: RunPlan): string {
  const counts = plan.dataset.manifest.counts;
  const n = (value: number) => value.toLocaleString("en-US");
  const overrides = Object.entries(plan.config.set).map(([key, value]) => `${key}=${value}`);
  const time = describeEstimate(plan.estimate);
  const remote = plan.target.startsWith("remote:") ? plan.target.slice("remote:".length) : undefined;
  const worker = remote
    ? `${remote}, when \`twin worker remote ssh://…@${remote}\` runs`
    : plan.workers[0]
      ? `worker ${plan.workers[0].id} (${describeHardware(plan.workers[0].hardware)})`
      : "a local worker on this machine";
  return [
    `Dataset ${plan.dataset.id}: ${summaryLine(plan.dataset.manifest)}.`,
    `${n(counts.trainExamples)} training and ${plural(counts.evalExamples, "held-out example", { grouped: true })}, ~${n(counts.tokensEstimate)} tokens.`,
    `Base: ${plan.base.name}. Method: ${describeMethod(plan)}, config ${plan.config.file}${overrides.length ? ` with ${overrides.join(", ")}` : ""}.`,
    `${plural(plan.estimate.steps, "step", { grouped: true })} of ${plan.processes > 1 ? `${plan.processes} × ` : ""}${n(plan.settings.tokensPerBatch)} tokens; time: ${time.total}.`,
    ...(time.parts ? [`Where the time goes: ${time.parts}; the status corrects it once steps run.`] : []),
    ...(plan.load && plan.load.average > plan.load.cpus * 0.75
      ? [
          `This machine is busy (load ${plan.load.average.toFixed(1)} on ${plural(plan.load.cpus, "core")}): training shares it and takes longer.`,
        ]
      : []),
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
  return `CPU, ${typeof hardware.cpus === "number" ? plural(hardware.cpus, "core") : "? cores"}`;
}
