import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { environmentForChild } from "../config/env.ts";
import { plural } from "../plural.ts";
import { trainerDir, trainerPython } from "./local-worker.ts";
import type { TimedEvent } from "./runs.repository.ts";
import { TrainPlanError } from "./training.errors.ts";
import type { EstimateParts, RunConfig, RunEstimate } from "./training.tables.ts";

/** trainer/configs: the YAML files a run may name (the worker reads the same folder). */
export const trainerConfigs = path.join(trainerDir, "configs");

/** The keys of a trainer config that decide how long a run takes. */
export type TrainerSettings = {
  method: string;
  epochs: number;
  maxSteps: number;
  tokensPerBatch: number;
  batching: string;
  /** Full fine-tuning: processes the worker launches (0: one per GPU). */
  processes: number;
  /** Steps between held-out evaluations (0: only the final one). */
  evalEvery: number;
  /** Held-out examples evaluated (0: all of them). */
  maxEvalExamples: number;
  /** Steps between checkpoints (0: only the final one). */
  saveEvery: number;
  /** "auto", "cpu" or "cuda". */
  device: string;
  /** The card the config is written for (0: none named). */
  gpuMemoryGb: number;
};

/** A run of these settings trains only where there is a GPU (pure): QLoRA, CUDA, or a card named. */
export function needsGpu(settings: Pick<TrainerSettings, "method" | "device" | "gpuMemoryGb">): boolean {
  return settings.method === "qlora" || settings.device === "cuda" || settings.gpuMemoryGb > 0;
}

/** What `python -m twin_trainer config` prints that a plan needs (it prints every key). */
const resolvedConfig = z.object({
  method: z.string(),
  epochs: z.number(),
  max_steps: z.number(),
  tokens_per_batch: z.number(),
  batching: z.string(),
  processes: z.number(),
  eval_every: z.number(),
  max_eval_examples: z.number(),
  save_every: z.number(),
  device: z.string(),
  gpu_memory_gb: z.number(),
});

/**
 * A config file's settings with the overrides on top, as the trainer resolves them: its defaults,
 * the file, then each override as `--set key=value`, the way the worker passes a run's `set` to
 * `load_config` (`python -m twin_trainer config` prints them; it loads no torch). The trainer
 * checks the values: a bad one is a TrainPlanError with its message.
 */
export async function readTrainerSettings(
  config: RunConfig,
  options: { python?: string | undefined; folder?: string | undefined } = {},
): Promise<TrainerSettings> {
  const folder = options.folder ?? trainerConfigs;
  const file = path.join(folder, config.file);
  if (path.dirname(file) !== folder || !fs.existsSync(file)) {
    const known = fs.readdirSync(folder).filter((name) => /\.ya?ml$/.test(name));
    throw new TrainPlanError(
      `trainer config ${config.file} is not in ${folder} (there: ${known.join(", ")})`,
    );
  }
  const args = ["-m", "twin_trainer", "config", "--config", file];
  for (const [key, value] of Object.entries(config.set)) args.push("--set", `${key}=${value}`);
  const python = trainerPython(options.python);
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      python,
      args,
      // The bot's secrets stay behind, as for every trainer process (the config needs none).
      { cwd: trainerDir, env: environmentForChild(), timeout: 60_000, maxBuffer: 1 << 20 },
      (error, out, err) => {
        if (!error) return resolve(out);
        const reason = error.killed
          ? "the trainer did not answer within 60 s"
          : String(err)
              .trim()
              .split("\n")
              .at(-1)
              ?.replace(/^error:\s*/, "") || error.message;
        reject(new TrainPlanError(`trainer config ${config.file}: ${reason}`));
      },
    );
  });
  let parsed: z.infer<typeof resolvedConfig>;
  try {
    parsed = resolvedConfig.parse(JSON.parse(stdout));
  } catch (error) {
    throw new TrainPlanError(
      `\`python -m twin_trainer config\` printed no settings twin can read: ${(error as Error).message}`,
    );
  }
  return {
    method: parsed.method,
    epochs: parsed.epochs,
    maxSteps: parsed.max_steps,
    tokensPerBatch: parsed.tokens_per_batch,
    batching: parsed.batching,
    processes: parsed.processes,
    evalEvery: parsed.eval_every,
    device: parsed.device,
    gpuMemoryGb: parsed.gpu_memory_gb,
    maxEvalExamples: parsed.max_eval_examples,
    saveEvery: parsed.save_every,
  };
}

/** Packed rows are this full on average (bench/train measures 0.9–0.99 on real datasets). */
const PACKING_FILL = 0.95;

/**
 * The prior's constants, calibrated on this project's machine (2 cores of an Intel Xeon, fp32) with
 * 10-step LoRA runs of SmolLM2-135M through `twin train` (1,024-token rows, 34 held-out examples of
 * ~970 tokens; bench/train/estimate.bench.ts). On the quiet machine they took 142–180 s: 9 s from
 * the queue to the first step, 4.3–5.3 s a step, 42–61 s for each of the two final evaluation
 * passes (the tuned model, then the base) and 3 s to export and store the adapter and draw the
 * chart. These constants estimate 159 s (112–239 s) for it; the last bench measured 145.8 s (the
 * estimate 1.09× it), earlier runs 154.8, 146.6 and 179.6 s. The old estimate, the steps alone at
 * 3e10 FLOP/s a core, said 92 s. A forward pass without autograd runs faster per FLOP than a
 * training step here, so evaluation counts 1.5 FLOPs per parameter and token, not 2. With other
 * tests on the same cores (load 4–5) the run took 665–690 s: no range covers a busy machine; the
 * ETA, measured as the run goes, does. docs/training.md ("How long a run takes") has the table.
 */
const CPU_FLOPS_PER_CORE = 6.5e10; // sustained fp32 in a training step
const EVAL_FLOPS_PER_PARAMETER = 1.5; // per held-out token, at the same rate (2 in theory; see above)
const GPU_FLOPS = 3e13; // bf16, a third of a consumer card's peak (not measured here)
const STARTUP_SECONDS = 6; // twin's plan and queue, the worker's Python and imports, the follow's polls
const TOKENIZED_PER_SECOND = 500_000; // the dataset read from PostgreSQL and tokenized with offsets
const LOADED_BYTES_PER_SECOND = 1e9; // the cached conversion of the base, fp32 (bf16 on a GPU)
const STORED_BYTES_PER_SECOND = 2e8; // checkpoints and a full model's GGUF written (and stored)
const FINISH_SECONDS = 4; // the adapter's GGUF, stored with the chart (matplotlib), the run marked
/** The range shown around the point estimate: the prior's is wide, a measured run's narrower. */
export const ESTIMATE_SPREAD = { rough: [0.7, 1.5], measured: [0.85, 1.2] } as const;

/** Seconds of each part of a run on one worker (the counts come from the settings). */
export type Pace = Pick<EstimateParts, "source" | "setup" | "step" | "evalPass" | "checkpoint" | "finish">;

/**
 * How often a run evaluates and checkpoints (pure), as trainer/twin_trainer/train.py does: an
 * evaluation every `evalEvery` steps before the last, then the tuned model and the base after it
 * (full fine-tuning measures the base before the first step instead); a checkpoint every
 * `saveEvery` steps and one at the end.
 */
export function runSchedule(steps: number, settings: TrainerSettings, evalExamples: number) {
  const evaluates = evalExamples > 0;
  const full = settings.method === "full";
  return {
    firstEvalPasses: evaluates && full ? 1 : 0,
    periodicEvalPasses:
      evaluates && settings.evalEvery > 0 ? Math.floor((steps - 1) / settings.evalEvery) : 0,
    finalEvalPasses: evaluates ? (full ? 1 : 2) : 0,
    checkpoints: settings.saveEvery > 0 ? Math.ceil(steps / settings.saveEvery) : 1,
  };
}

/**
 * Steps and seconds a run will take (pure). Steps follow the trainer: packed rows of
 * `tokensPerBatch` over the training tokens, times the epochs, unless max_steps says otherwise;
 * with several processes (full fine-tuning on several GPUs) each step takes one row per process.
 * Seconds add up every part, not the steps alone: the setup, the steps, every evaluation pass over
 * the held-out examples, the checkpoints and the export. Without a pace (neither a timed run nor
 * the model's size to guess from), null. The range is the pace's uncertainty (ESTIMATE_SPREAD).
 */
export function estimateRun(input: {
  trainTokens: number;
  settings: TrainerSettings;
  processes?: number | undefined;
  /** Held-out examples the run evaluates (the dataset's, at most max_eval_examples). */
  evalExamples?: number | undefined;
  pace?: Pace | undefined;
}): RunEstimate {
  const { trainTokens, settings, pace } = input;
  const rowTokens = settings.tokensPerBatch * PACKING_FILL * Math.max(1, input.processes ?? 1);
  const perEpoch = Math.max(1, Math.ceil(trainTokens / rowTokens));
  const steps =
    settings.maxSteps > 0 ? settings.maxSteps : Math.max(1, Math.ceil(perEpoch * settings.epochs));
  if (!pace) return { steps, seconds: null };
  const evalExamples = input.evalExamples ?? 0;
  const schedule = runSchedule(steps, settings, evalExamples);
  const parts: EstimateParts = {
    ...pace,
    tokensPerBatch: settings.tokensPerBatch,
    evalExamples,
    evalEvery: settings.evalEvery,
    saveEvery: settings.saveEvery,
    firstEvalPasses: schedule.firstEvalPasses,
    finalEvalPasses: schedule.finalEvalPasses,
  };
  const passes = schedule.firstEvalPasses + schedule.periodicEvalPasses + schedule.finalEvalPasses;
  const seconds =
    pace.setup +
    steps * pace.step +
    passes * pace.evalPass +
    schedule.checkpoints * pace.checkpoint +
    pace.finish;
  const [low, high] = ESTIMATE_SPREAD[pace.source];
  return {
    steps,
    seconds: Math.round(seconds),
    low: Math.round(seconds * low),
    high: Math.round(seconds * high),
    parts,
  };
}

/**
 * A rough pace before any run on this base was timed (pure): one row of `tokensPerBatch` on one
 * device (a full run's processes each take a row per step, in parallel). Per parameter and token:
 * 2 FLOPs forward and 2 backward through the activations, 2 more for the weights' own gradients in
 * full fine-tuning, and 2 to recompute the forward with gradient checkpointing (on GPUs); an
 * evaluation pass is the forward alone over the held-out tokens (EVAL_FLOPS_PER_PARAMETER). Rates
 * and fixed costs: above.
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
  return flops / flopRate(hardware);
}

function flopRate(hardware: { gpus: number; cpus: number }): number {
  return hardware.gpus > 0 ? GPU_FLOPS : Math.max(1, hardware.cpus) * CPU_FLOPS_PER_CORE;
}

/** Every part of a run's time from the model's size, the dataset and the hardware (pure). */
export function priorPace(input: {
  parameters: number;
  tokensPerBatch: number;
  /** Tokens of the held-out examples one evaluation pass reads. */
  evalTokens: number;
  /** Tokens of the whole dataset, read and tokenized once. */
  datasetTokens: number;
  hardware: { gpus: number; cpus: number };
  method?: string | undefined;
  processes?: number | undefined;
}): Pace {
  const { parameters, hardware } = input;
  const full = input.method === "full";
  const processes = Math.max(1, input.processes ?? 1);
  const weightBytes = parameters * (hardware.gpus > 0 ? 2 : 4);
  return {
    source: "rough",
    setup:
      STARTUP_SECONDS + input.datasetTokens / TOKENIZED_PER_SECOND + weightBytes / LOADED_BYTES_PER_SECOND,
    step: priorSecondsPerStep(input),
    evalPass:
      (EVAL_FLOPS_PER_PARAMETER * parameters * input.evalTokens) /
      flopRate(hardware) /
      (full ? processes : 1),
    // A LoRA checkpoint is the adapter and its optimizer state (megabytes); a full one, fp32 weights
    // and two AdamW states per parameter, written by every process in parallel.
    checkpoint: full ? (12 * parameters) / processes / STORED_BYTES_PER_SECOND : 1,
    finish: FINISH_SECONDS + (full ? (2 * parameters) / STORED_BYTES_PER_SECOND : 0),
  };
}

/**
 * Where a finished run's time went (pure), from the times its events were stored, after its last
 * claim: the setup (to the start event), each step (from the event before its log), each evaluation
 * (from the `evaluating` phase event to the next, with the passes it announced), each checkpoint, and
 * the rest after the last step (saving, exporting, storing). Runs from workers without phase events
 * count the final evaluation as two passes.
 */
export function timeRun(events: TimedEvent[]) {
  let claimed = -1;
  events.forEach((e, i) => {
    if (e.event === "claimed") claimed = i;
  });
  const timed = {
    setup: 0,
    stepSeconds: 0,
    steps: 0,
    evalSeconds: 0,
    evalPasses: 0,
    checkpointSeconds: 0,
    checkpoints: 0,
    finish: 0,
    evalExamples: 0,
  };
  if (claimed < 0) return undefined;
  let started = false;
  for (let i = claimed + 1; i < events.length; i++) {
    const event = events[i] as TimedEvent;
    const previous = events[i - 1] as TimedEvent;
    const seconds = (event.at.getTime() - previous.at.getTime()) / 1000;
    if (previous.event === "phase" && previous.data.phase === "evaluating") {
      timed.evalSeconds += seconds;
      timed.evalPasses += Number(previous.data.passes ?? 1);
    } else if (event.event === "log") {
      timed.stepSeconds += seconds;
      timed.steps += 1;
    } else if (event.event === "eval") {
      const later = events.slice(i + 1).some((e) => e.event === "log");
      timed.evalSeconds += seconds;
      timed.evalPasses += later ? 1 : 2;
    } else if (event.event === "checkpoint") {
      timed.checkpointSeconds += seconds;
      timed.checkpoints += 1;
    } else if (!started) {
      timed.setup += seconds;
    } else {
      timed.finish += seconds;
    }
    if (event.event === "start") {
      started = true;
      timed.evalExamples = Number(event.data.eval_examples ?? 0);
    }
    if (event.event === "succeeded") break;
  }
  return timed.steps > 0 ? timed : undefined;
}

/**
 * The pace of the latest run on this base and config (pure), scaled to this one: steps by the
 * row length, an evaluation pass by the held-out examples. Parts it cannot tell (no evaluation, no
 * checkpoint) are left out, for the prior to fill.
 */
export function measuredPace(
  run: { estimate: RunEstimate | null; events: TimedEvent[] },
  target: { tokensPerBatch: number; evalExamples: number },
): Partial<Pace> | undefined {
  const timed = timeRun(run.events);
  if (!timed) return undefined;
  const rowScale = target.tokensPerBatch / (run.estimate?.parts?.tokensPerBatch ?? target.tokensPerBatch);
  const pace: Partial<Pace> = {
    source: "measured",
    setup: timed.setup,
    step: (timed.stepSeconds / timed.steps) * rowScale,
    finish: timed.finish,
  };
  if (timed.evalPasses > 0 && timed.evalExamples > 0) {
    pace.evalPass = (timed.evalSeconds / timed.evalPasses / timed.evalExamples) * target.evalExamples;
  }
  if (timed.checkpoints > 0) pace.checkpoint = timed.checkpointSeconds / timed.checkpoints;
  return pace;
}

/**
 * The estimate in words (pure): the total with its range and where the pace comes from, and the
 * parts it adds up, so the fixed costs (loading, evaluation, export) show beside the steps.
 */
export function describeEstimate(estimate: RunEstimate): { total: string; parts?: string } {
  const { seconds, parts } = estimate;
  if (!seconds) return { total: "unknown until the first steps run; the status shows an ETA" };
  const range = estimate.low && estimate.high ? `${formatRange(estimate.low, estimate.high)}, ` : "";
  if (!parts) return { total: `about ${formatDuration(seconds)}` };
  const measured = parts.source === "measured";
  const total = measured
    ? `about ${formatDuration(seconds)} (${range}at the last run's pace)`
    : `roughly ${formatDuration(seconds)} (${range}from the model's size and this hardware)`;
  const each = (value: number) => (value < 10 ? `${value.toFixed(1)} s` : formatDuration(value));
  const passes = parts.firstEvalPasses + parts.finalEvalPasses + periodicPasses(estimate);
  const list = [
    `loading ${formatDuration(parts.setup)}`,
    `${plural(estimate.steps, "step", { grouped: true })} × ${each(parts.step)}`,
    passes > 0
      ? `${plural(passes, "held-out pass", { many: "held-out passes" })} × ${each(parts.evalPass)} (${plural(parts.evalExamples, "example", { grouped: true })})`
      : "",
    `export ${formatDuration(parts.finish)}`,
  ].filter(Boolean);
  return { total, parts: list.join(", ") };
}

function periodicPasses(estimate: RunEstimate): number {
  const parts = estimate.parts;
  if (!parts || parts.evalExamples === 0 || parts.evalEvery <= 0) return 0;
  return Math.floor((estimate.steps - 1) / parts.evalEvery);
}

/** "2–5 min", "40 s–2 min", "50 min–1 h 15 min" (pure). */
export function formatRange(low: number, high: number): string {
  const [from, to] = [formatDuration(low), formatDuration(high)];
  if (from === to) return from;
  const minutes = (text: string) => /^\d+ min$/.test(text);
  return minutes(from) && minutes(to) ? `${from.replace(" min", "")}–${to}` : `${from}–${to}`;
}

/** "3 h 05 min", "12 min", "40 s". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}
