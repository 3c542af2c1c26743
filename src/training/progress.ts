import type { TrainingEvent, TrainingRun } from "./runs.repository.ts";
import { FINISHED, LOG_LINE, type RunsRepository } from "./runs.repository.ts";
import type { RunEstimate } from "./training.tables.ts";

/**
 * What a run does now. The worker says it with `phase` events (loading, tokenizing, evaluating,
 * exporting, storing); `start` and each step's `log` mean training. "finishing" is the time after
 * the last step that a worker without phase events leaves unnamed.
 */
export const RUN_PHASES = [
  "queued",
  "loading",
  "tokenizing",
  "training",
  "evaluating",
  "finishing",
  "exporting",
  "storing",
  "done",
] as const;
export type RunPhase = (typeof RUN_PHASES)[number];

/** Each phase in words, for the CLI's bar and the bot's status message. */
export const PHASE_LABELS: Record<RunPhase, string> = {
  queued: "waiting for a worker",
  loading: "loading the model",
  tokenizing: "tokenizing the dataset",
  training: "training",
  evaluating: "evaluating on held-out examples",
  finishing: "evaluating and exporting",
  exporting: "exporting the result as GGUF",
  storing: "storing the result",
  done: "done",
};

/** What a run's events say so far (folded from training_events; pure). */
export type RunProgress = {
  phase: RunPhase;
  step: number;
  maxSteps: number | null;
  loss: number | null;
  evalLoss: number | null;
  /**
   * Seconds left as of the latest event: the estimate's parts, with the steps and evaluation passes
   * of this attempt as they were measured once they ran (`etaNow` counts it down between events).
   */
  etaSeconds: number | null;
  worker: string | null;
  resumedFrom: number;
  requeues: number;
  /** The estimate the run was queued with (from its `queued` event). */
  estimate: RunEstimate | null;
  /** Measured in this attempt, from the times its events were stored. */
  timed: { stepSeconds: number; steps: number; evalSeconds: number; evalPasses: number };
  /** Evaluation passes of the evaluation under way; whether the final one has ended. */
  passes: number;
  evaluated: boolean;
  /** The latest event that times the next (its kind and when it was stored, ms), and the claim's. */
  last: { event: string; at: number } | null;
  claimedAt: number | null;
};

export const initialProgress: RunProgress = {
  phase: "queued",
  step: 0,
  maxSteps: null,
  loss: null,
  evalLoss: null,
  etaSeconds: null,
  worker: null,
  resumedFrom: 0,
  requeues: 0,
  estimate: null,
  timed: { stepSeconds: 0, steps: 0, evalSeconds: 0, evalPasses: 0 },
  passes: 0,
  evaluated: false,
  last: null,
  claimedAt: null,
};

const num = (value: unknown): number | null => (typeof value === "number" ? value : null);
const NAMED_PHASES: RunPhase[] = ["loading", "tokenizing", "evaluating", "exporting", "storing"];

export function foldProgress(
  state: RunProgress,
  event: Pick<TrainingEvent, "event" | "data"> & { at?: Date | undefined },
): RunProgress {
  if (event.event === LOG_LINE) return state; // the run's output: stored beside, not progress
  const data = event.data;
  const at = event.at?.getTime();
  const marker = event.event === "phase" ? `phase:${String(data.phase)}` : event.event;
  const next = {
    ...timing(state, event.event, at),
    last: at === undefined ? state.last : { event: marker, at },
  };
  let folded: RunProgress;
  switch (event.event) {
    case "queued": {
      const estimate = (data.estimate as RunEstimate | undefined) ?? null;
      folded = { ...next, estimate, maxSteps: state.maxSteps ?? estimate?.steps ?? null };
      break;
    }
    case "claimed":
      folded = {
        ...next,
        phase: "loading",
        worker: String(data.worker ?? ""),
        timed: initialProgress.timed, // a new attempt: its own pace
        claimedAt: at ?? null,
        evaluated: false,
      };
      break;
    case "phase": {
      const phase = NAMED_PHASES.find((name) => name === data.phase);
      folded = phase ? { ...next, phase, passes: num(data.passes) ?? 1 } : next;
      break;
    }
    case "start":
      folded = {
        ...next,
        phase: "training",
        step: num(data.resumed_from) ?? 0,
        maxSteps: num(data.steps),
        resumedFrom: num(data.resumed_from) ?? 0,
      };
      break;
    case "log": {
      const step = num(data.step) ?? state.step;
      const maxSteps = num(data.max_steps) ?? state.maxSteps;
      folded = {
        ...next,
        phase: maxSteps !== null && step >= maxSteps ? "finishing" : "training",
        step,
        maxSteps,
        loss: num(data.loss),
        evalLoss: num(data.eval_loss) ?? state.evalLoss,
      };
      break;
    }
    case "eval": {
      const final = state.maxSteps !== null && state.step >= state.maxSteps;
      folded = {
        ...next,
        evalLoss: num(data.loss) ?? state.evalLoss,
        phase:
          state.phase === "evaluating" || state.phase === "finishing"
            ? final
              ? "finishing"
              : "training"
            : state.phase,
        evaluated: state.evaluated || final,
      };
      break;
    }
    case "done":
      folded = { ...next, phase: "finishing", evaluated: true };
      break;
    case "requeued":
      folded = { ...next, phase: "queued", worker: null, requeues: state.requeues + 1 };
      break;
    case "succeeded":
    case "failed":
    case "cancelled":
      folded = { ...next, phase: "done" };
      break;
    default:
      folded = next;
  }
  return { ...folded, etaSeconds: remainingSeconds(folded, event) };
}

/** The step or evaluation that `event` ends, timed from the event before it (pure). */
function timing(state: RunProgress, name: string, at: number | undefined): RunProgress {
  if (at === undefined || !state.last) return state;
  const seconds = (at - state.last.at) / 1000;
  const timed = { ...state.timed };
  if (state.last.event === "phase:evaluating") {
    timed.evalSeconds += seconds;
    timed.evalPasses += state.passes;
  } else if (name === "log") {
    timed.stepSeconds += seconds;
    timed.steps += 1;
  } else return state;
  return { ...state, timed };
}

/**
 * Seconds left after this event (pure): what the estimate's parts say is left of the setup, the
 * steps, the evaluation passes, the checkpoints and the export, each step and pass at the pace
 * measured in this attempt once one ran. Without an estimate's parts (a run queued by an older
 * twin), the trainer's own ETA for the steps.
 */
export function remainingSeconds(
  state: RunProgress,
  event: Pick<TrainingEvent, "event" | "data"> = { event: "", data: {} },
): number | null {
  const parts = state.estimate?.parts;
  if (!parts) {
    if (event.event === "log") return num(event.data.eta_seconds);
    return state.phase === "training" ? state.etaSeconds : null;
  }
  const { timed } = state;
  const step = timed.steps > 0 ? timed.stepSeconds / timed.steps : parts.step;
  const pass = timed.evalPasses > 0 ? timed.evalSeconds / timed.evalPasses : parts.evalPass;
  const total = state.maxSteps ?? state.estimate?.steps ?? 0;
  const left = Math.max(0, total - state.step);
  const every = (interval: number, from: number, to: number) =>
    interval > 0 ? Math.max(0, Math.floor(to / interval) - Math.floor(from / interval)) : 0;
  const periodic = parts.evalExamples > 0 ? every(parts.evalEvery, state.step, Math.max(0, total - 1)) : 0;
  const lastCheckpoint = parts.saveEvery > 0 && total % parts.saveEvery === 0 ? 0 : 1; // save() adds one
  const checkpoints = every(parts.saveEvery, state.step, total) + (left > 0 ? lastCheckpoint : 0);
  const training = left * step + periodic * pass + checkpoints * parts.checkpoint;
  const after = parts.finalEvalPasses * pass + parts.finish;
  const sinceClaim = state.claimedAt !== null && state.last ? (state.last.at - state.claimedAt) / 1000 : 0;
  switch (state.phase) {
    case "queued":
      return parts.setup + parts.firstEvalPasses * pass + training + after;
    case "loading":
    case "tokenizing":
      return Math.max(0, parts.setup - sinceClaim) + parts.firstEvalPasses * pass + training + after;
    case "training":
      return training + after;
    case "evaluating":
      return state.passes * pass + (state.step < total ? training + after : parts.finish);
    case "finishing":
      return state.evaluated ? parts.finish : after;
    case "exporting":
      return parts.finish;
    case "storing":
      return parts.finish / 2;
    default:
      return 0;
  }
}

/** The ETA `secondsSince` after the latest event was seen (pure): counting down, never below 0. */
export function etaNow(progress: RunProgress, secondsSince: number): number | null {
  if (progress.etaSeconds === null) return null;
  if (progress.phase === "queued") return progress.etaSeconds; // no worker yet: nothing counts down
  return Math.max(0, progress.etaSeconds - secondsSince);
}

/**
 * Follows a run until it finishes: folds new events every `pollMs` and reports them, its ETA
 * counted down since the latest. `signal` cancels the run (the worker stops at its next step) and
 * keeps following until it has.
 */
export async function followRun(
  runs: RunsRepository,
  runId: number,
  options: {
    pollMs?: number;
    signal?: AbortSignal | undefined;
    onProgress?: ((progress: RunProgress, run: TrainingRun) => void) | undefined;
  } = {},
): Promise<{ run: TrainingRun; progress: RunProgress }> {
  let progress = initialProgress;
  let lastEvent = 0;
  let seenAt = Date.now();
  let cancelAsked = false;
  for (;;) {
    if (options.signal?.aborted && !cancelAsked) {
      cancelAsked = true;
      await runs.requestCancel(runId);
    }
    const run = await runs.get(runId);
    if (!run) throw new Error(`there is no training run ${runId}`);
    const events = await runs.events(runId, lastEvent);
    for (const event of events) {
      progress = foldProgress(progress, event);
      lastEvent = event.id;
    }
    if (events.length > 0) seenAt = Date.now();
    options.onProgress?.({ ...progress, etaSeconds: etaNow(progress, (Date.now() - seenAt) / 1000) }, run);
    if (FINISHED.includes(run.status)) return { run, progress };
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
  }
}
