import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeFailure, FAILURE_TAIL_LINES, failureNote, formatRunLog } from "./run-log.ts";

describe("a run's log", () => {
  const at = new Date("2026-01-01T10:00:00Z");

  it("prints the lines a run printed, each attempt headed by its worker, and how it ended", () => {
    const lines = formatRunLog([
      { event: "claimed", data: { worker: "box:1:ab", attempt: 1 }, at },
      { event: "log_line", data: { line: "FutureWarning: is_gradient_checkpointing is deprecated" }, at },
      { event: "requeued", data: { reason: "worker box:1:ab stopped sending heartbeats" }, at },
      { event: "claimed", data: { worker: "box:2:cd", attempt: 2 }, at },
      { event: "log_line", data: { line: "Traceback (most recent call last):" }, at },
      { event: "failed", data: { reason: "ValueError: no" }, at },
    ]);
    assert.deepEqual(lines, [
      "── attempt 1 on worker box:1:ab, 2026-01-01 10:00:00 UTC ──",
      "FutureWarning: is_gradient_checkpointing is deprecated",
      "── back in the queue: worker box:1:ab stopped sending heartbeats ──",
      "── attempt 2 on worker box:2:cd, 2026-01-01 10:00:00 UTC ──",
      "Traceback (most recent call last):",
      "── failed: ValueError: no ──",
    ]);
  });

  it("quotes a failed run's last lines and says where the rest is", () => {
    const tail = Array.from({ length: 20 }, (_, i) => `line ${i}`);
    const text = describeFailure(7, "ValueError: 1 examples exceed tokens_per_batch=64", tail);
    const lines = text.split("\n");
    assert.equal(lines[0], "ValueError: 1 examples exceed tokens_per_batch=64");
    assert.equal(lines[1], "The last lines of its log:");
    assert.equal(lines.length, 2 + FAILURE_TAIL_LINES + 1, "the last lines only");
    assert.equal(lines[2], `  line ${20 - FAILURE_TAIL_LINES}`);
    assert.equal(lines.at(-1), "The whole log: twin train log 7");
    assert.equal(describeFailure(7, null, []), "the worker gave no reason\nThe whole log: twin train log 7");
    assert.ok(
      describeFailure(7, "x".repeat(5000), [`${"y".repeat(5000)}`]).length < 1_500,
      "a message, not a dump",
    );
    assert.equal(
      failureNote(7, "RuntimeError: 2 training processes exited with 1: boom\nmore"),
      "RuntimeError: 2 training processes exited with 1: boom (log: twin train log 7)",
    );
  });
});
