import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { metricsText, progressText } from "../bot/features/train.ts";
import { foldProgress, initialProgress, type RunProgress } from "./progress.ts";

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
