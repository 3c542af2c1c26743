import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { metricsText, progressText } from "../bot/features/train.ts";
import { etaNow, foldProgress, initialProgress, type RunProgress } from "./progress.ts";
import type { EstimateParts } from "./training.tables.ts";

const fold = (events: [string, Record<string, unknown>][]): RunProgress =>
  events.reduce((state, [event, data]) => foldProgress(state, { event, data }), initialProgress);

describe("a run's progress from its events", () => {
  it("follows a run from the queue to the end, keeping the latest held-out loss", () => {
    const state = fold([
      ["queued", {}],
      ["claimed", { worker: "gpu-box:12:ab" }],
      ["start", { steps: 10, resumed_from: 4 }],
      ["log", { step: 5, max_steps: 10, loss: 2.5, eval_loss: null, eta_seconds: 50 }],
      ["eval", { step: 5, loss: 2.75 }],
      ["log", { step: 6, max_steps: 10, loss: 2.25, eval_loss: 2.75, eta_seconds: 40 }],
    ]);
    assert.equal(state.phase, "training");
    assert.equal(state.worker, "gpu-box:12:ab");
    assert.deepEqual([state.step, state.maxSteps, state.loss, state.evalLoss], [6, 10, 2.25, 2.75]);
    assert.equal(
      progressText(state),
      "▓▓▓▓▓▓░░░░ 60% · step 6/10\nloss 2.250 · held-out 2.750 · ETA 40 s\nresumed from step 4",
    );
    const finishing = foldProgress(state, {
      event: "log",
      data: { step: 10, max_steps: 10, loss: 2, eta_seconds: 0 },
    });
    assert.equal(finishing.phase, "finishing", "after the last step: evaluation and export");
    assert.equal(foldProgress(finishing, { event: "succeeded", data: {} }).phase, "done");
  });

  it("names each phase the worker reports, on the way from loading to storing", () => {
    const seen: string[] = [];
    let state = initialProgress;
    for (const [event, data] of [
      ["claimed", { worker: "w" }],
      ["phase", { phase: "loading" }],
      ["phase", { phase: "tokenizing" }],
      ["start", { steps: 4, resumed_from: 0 }],
      ["log", { step: 2, max_steps: 4, loss: 2 }],
      ["phase", { phase: "evaluating", passes: 1 }],
      ["eval", { step: 2, loss: 2.5 }],
      ["log", { step: 4, max_steps: 4, loss: 1.5 }],
      ["phase", { phase: "evaluating", passes: 2 }],
      ["eval", { step: 4, loss: 2.4 }],
      ["done", {}],
      ["phase", { phase: "exporting" }],
      ["phase", { phase: "storing" }],
      ["log_line", { line: "a warning" }],
      ["succeeded", {}],
    ] as [string, Record<string, unknown>][]) {
      state = foldProgress(state, { event, data });
      seen.push(state.phase);
    }
    assert.deepEqual(seen, [
      "loading",
      "loading",
      "tokenizing",
      "training",
      "training",
      "evaluating",
      "training",
      "finishing",
      "evaluating",
      "finishing",
      "finishing",
      "exporting",
      "storing",
      "storing",
      "done",
    ]);
    const evaluating = fold([
      ["start", { steps: 4, resumed_from: 0 }],
      ["log", { step: 4, max_steps: 4, loss: 1.5 }],
      ["phase", { phase: "evaluating", passes: 2 }],
    ]);
    assert.equal(
      progressText(evaluating),
      "evaluating on held-out examples…\n▓▓▓▓▓▓▓▓▓▓ 100% · step 4/4\nloss 1.500",
    );
    assert.equal(progressText(fold([["claimed", { worker: "w" }]])), "loading the model…");
  });

  it("estimates what is left from the plan's parts, then from the pace measured as steps and evaluations run", () => {
    const parts: EstimateParts = {
      source: "rough",
      setup: 9,
      step: 4,
      evalPass: 60,
      checkpoint: 1,
      finish: 4,
      tokensPerBatch: 1024,
      evalExamples: 34,
      evalEvery: 50,
      saveEvery: 50,
      firstEvalPasses: 0,
      finalEvalPasses: 2,
    };
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    let state = initialProgress;
    const step = (event: string, data: Record<string, unknown>, seconds: number) => {
      state = foldProgress(state, { event, data, at: new Date(t0 + seconds * 1000) });
      return state.etaSeconds;
    };
    // 10 steps × 4 s, 2 passes × 60 s, a checkpoint, the export; the setup while it waits.
    assert.equal(step("queued", { estimate: { steps: 10, seconds: 174, parts } }, 0), 9 + 40 + 120 + 1 + 4);
    assert.equal(state.maxSteps, 10, "the bar knows the steps before the worker does");
    assert.equal(step("claimed", { worker: "w" }, 1), 9 + 40 + 120 + 1 + 4);
    assert.equal(step("phase", { phase: "tokenizing" }, 5), 5 + 40 + 120 + 1 + 4, "4 s of the setup spent");
    assert.equal(step("start", { steps: 10, resumed_from: 0 }, 10), 40 + 120 + 1 + 4);
    // The steps take 8 s here, not 4: from the first one the ETA says so.
    assert.equal(step("log", { step: 1, max_steps: 10, eta_seconds: 1 }, 18), 9 * 8 + 120 + 1 + 4);
    assert.equal(step("log", { step: 2, max_steps: 10, eta_seconds: 1 }, 26), 8 * 8 + 120 + 1 + 4);
    assert.equal(step("log", { step: 10, max_steps: 10, eta_seconds: 0 }, 90), 120 + 4);
    step("checkpoint", { step: 10 }, 91);
    assert.equal(step("phase", { phase: "evaluating", passes: 2 }, 91), 120 + 4);
    // The evaluation took 100 s for two passes: the next pass counts 50.
    assert.equal(step("eval", { step: 10, loss: 2 }, 191), 4);
    assert.equal(state.timed.evalPasses, 2);
    assert.equal(step("phase", { phase: "exporting" }, 192), 4);
    assert.equal(step("succeeded", {}, 196), 0);

    const counting = { ...initialProgress, phase: "training" as const, etaSeconds: 100 };
    assert.equal(etaNow(counting, 30), 70, "between events the ETA counts down");
    assert.equal(etaNow(counting, 300), 0, "never below zero");
    assert.equal(etaNow({ ...counting, phase: "queued" }, 30), 100, "not while no worker has it");
  });

  it("says when a silent worker's run waits to be resumed", () => {
    const state = fold([
      ["claimed", { worker: "a" }],
      ["start", { steps: 10, resumed_from: 0 }],
      ["requeued", { reason: "worker a stopped sending heartbeats" }],
    ]);
    assert.equal(state.phase, "queued");
    assert.match(progressText(state), /went silent/);
  });

  it("compares base and tuned held-out loss", () => {
    const overall = (loss: number) => ({
      loss,
      perplexity: Math.exp(loss),
      content_loss: loss + 1,
      content_perplexity: Math.exp(loss + 1),
    });
    assert.equal(
      metricsText({ base: { overall: overall(3) }, tuned: { overall: overall(2) }, eval_examples: 40 }),
      "Held-out loss on the messages' own text: base 4.000 → tuned 3.000 (perplexity 54.6 → 20.1).\nOn every trained token: 3.000 → 2.000; 40 held-out examples.",
    );
    assert.match(metricsText({}), /No held-out examples/);
  });
});
