import type { TrainingEvent, TrainingRun } from "./runs.repository.ts";
import { FINISHED, type RunsRepository } from "./runs.repository.ts";

/** What a run's events say so far (folded from training_events; pure). */
export type RunProgress = {
  phase: "queued" | "loading" | "training" | "finishing" | "done";
  step: number;
  maxSteps: number | null;
  loss: number | null;
  evalLoss: number | null;
  etaSeconds: number | null;
  worker: string | null;
  resumedFrom: number;
  requeues: number;
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
};

const num = (value: unknown): number | null => (typeof value === "number" ? value : null);

export function foldProgress(state: RunProgress, event: Pick<TrainingEvent, "event" | "data">): RunProgress {
  const data = event.data;
  switch (event.event) {
    case "claimed":
      return { ...state, phase: "loading", worker: String(data.worker ?? "") };
    case "start":
      return {
        ...state,
        phase: "training",
        step: num(data.resumed_from) ?? 0,
        maxSteps: num(data.steps),
        resumedFrom: num(data.resumed_from) ?? 0,
      };
    case "log": {
      const step = num(data.step) ?? state.step;
      const maxSteps = num(data.max_steps) ?? state.maxSteps;
      return {
        ...state,
        phase: maxSteps !== null && step >= maxSteps ? "finishing" : "training",
        step,
        maxSteps,
        loss: num(data.loss),
        evalLoss: num(data.eval_loss) ?? state.evalLoss,
        etaSeconds: num(data.eta_seconds),
      };
    }
    case "eval":
      return { ...state, evalLoss: num(data.loss) ?? state.evalLoss };
    case "requeued":
      return { ...state, phase: "queued", worker: null, requeues: state.requeues + 1 };
    case "succeeded":
    case "failed":
    case "cancelled":
      return { ...state, phase: "done" };
    default:
      return state;
  }
}

/**
 * Follows a run until it finishes: folds new events every `pollMs` and reports them. `signal`
 * cancels the run (the worker stops at its next step) and keeps following until it has.
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
  let cancelAsked = false;
  for (;;) {
    if (options.signal?.aborted && !cancelAsked) {
      cancelAsked = true;
      await runs.requestCancel(runId);
    }
    const run = await runs.get(runId);
    if (!run) throw new Error(`there is no training run ${runId}`);
    for (const event of await runs.events(runId, lastEvent)) {
      progress = foldProgress(progress, event);
      lastEvent = event.id;
    }
    options.onProgress?.(progress, run);
    if (FINISHED.includes(run.status)) return { run, progress };
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
  }
}
