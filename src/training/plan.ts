import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import type { RunConfig } from "./training.tables.ts";

/** trainer/configs: the YAML files a run may name (the worker reads the same folder). */
export const trainerConfigs = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../trainer/configs",
);

export class TrainPlanError extends Error {}

/** The keys of a trainer config that decide how long a run takes. */
export type TrainerSettings = {
  method: string;
  epochs: number;
  maxSteps: number;
  tokensPerBatch: number;
  batching: string;
  /** Full fine-tuning: processes the worker launches (0: one per GPU). */
  processes: number;
};

/** A config file's settings with the overrides on top (the trainer validates the rest). */
export function readTrainerSettings(config: RunConfig, folder = trainerConfigs): TrainerSettings {
  const file = path.join(folder, config.file);
  if (path.dirname(file) !== folder || !fs.existsSync(file)) {
    const known = fs.readdirSync(folder).filter((name) => /\.ya?ml$/.test(name));
    throw new TrainPlanError(
      `trainer config ${config.file} is not in ${folder} (there: ${known.join(", ")})`,
    );
  }
  const values = { ...(parse(fs.readFileSync(file, "utf8")) ?? {}), ...config.set } as Record<
    string,
    unknown
  >;
  const number = (key: string, fallback: number) => {
    const value = Number(values[key] ?? fallback);
    if (!Number.isFinite(value))
      throw new TrainPlanError(`${config.file}: ${key}=${values[key]} is not a number`);
    return value;
  };
  return {
    method: String(values.method ?? "lora"),
    epochs: number("epochs", 2),
    maxSteps: number("max_steps", 0),
    tokensPerBatch: number("tokens_per_batch", 2048),
    batching: String(values.batching ?? "packed"),
    processes: number("processes", 0),
  };
}

/** Packed rows are this full on average (bench/train measures 0.9–0.99 on real datasets). */
const PACKING_FILL = 0.95;

/**
 * Steps and seconds a run will take (pure). Steps follow the trainer: packed rows of
 * `tokensPerBatch` over the training tokens, times the epochs, unless max_steps says otherwise;
 * with several processes (full fine-tuning on several GPUs) each step takes one row per process.
 * Seconds need a pace (measured on an earlier run, or the rough prior); without one, null.
 */
export function estimateRun(input: {
  trainTokens: number;
  settings: TrainerSettings;
  secondsPerStep?: number | undefined;
  processes?: number | undefined;
}): { steps: number; seconds: number | null } {
  const { trainTokens, settings } = input;
  const rowTokens = settings.tokensPerBatch * PACKING_FILL * Math.max(1, input.processes ?? 1);
  const perEpoch = Math.max(1, Math.ceil(trainTokens / rowTokens));
  const steps =
    settings.maxSteps > 0 ? settings.maxSteps : Math.max(1, Math.ceil(perEpoch * settings.epochs));
  return { steps, seconds: input.secondsPerStep ? Math.round(steps * input.secondsPerStep) : null };
}

/**
 * A rough pace before any run on this base was timed (pure): one row of `tokensPerBatch` on one
 * device (a full run's processes each take a row per step, in parallel). Per parameter and token:
 * 2 FLOPs forward and 2 backward through the activations, 2 more for the weights' own gradients in
 * full fine-tuning, and 2 to recompute the forward with gradient checkpointing (on GPUs).
 * Sustained rates: ~3e10 FLOP/s per CPU core in fp32 (SmolLM2-135M on this project's 2-core
 * machine: 400-token steps in 3 s) and ~3e13 per GPU in bf16 (a third of a consumer card's peak).
 * Right within a factor of two or so; the status shows a measured ETA once steps run.
 */
export function priorSecondsPerStep(input: {
  parameters: number;
  tokensPerBatch: number;
  hardware: { gpus: number; cpus: number };
  method?: string | undefined;
}): number {
  const { parameters, tokensPerBatch, hardware } = input;
  const gpu = hardware.gpus > 0;
  const flops = (4 + (input.method === "full" ? 2 : 0) + (gpu ? 2 : 0)) * parameters * tokensPerBatch;
  const rate = gpu ? 3e13 : Math.max(1, hardware.cpus) * 3e10;
  return flops / rate;
}

/** "3 h 05 min", "12 min", "40 s". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}
