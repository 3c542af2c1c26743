import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { plainLine, progressBar } from "./progress.ts";

describe("progress when stderr is not a terminal", () => {
  it("writes the bar's format as a plain line, the bar left out", () => {
    assert.equal(
      plainLine("generating |{bar}| {value}/{total} turns | {model}", 3, 40, { model: "base model" }),
      "generating 3/40 turns | base model",
    );
    assert.equal(
      plainLine("importing |{bar}| {percentage}% | {value}/{total} MB", 1, 4, {}),
      "importing 25% | 1/4 MB",
    );
    assert.equal(plainLine("generating |{bar}| {value}/{total} | {model}", 0, 1, {}), "generating 0/1");
  });

  it("prints a line per stage, one per interval within a stage, and where it stopped", () => {
    const lines: string[] = [];
    let clock = 0;
    const bar = progressBar({
      format: "generating |{bar}| {value}/{total} turns | {model}",
      stage: "model",
      everyMs: 1000,
      stream: { isTTY: false, write: (text: string) => lines.push(text) },
      now: () => clock,
    });
    bar.start(1, 0, { model: "" });
    assert.deepEqual(lines, [], "no stage yet: nothing");
    bar.setTotal(6);
    bar.update(1, { model: "base" });
    bar.update(2, { model: "base" });
    clock = 1500;
    bar.update(3, { model: "base" });
    bar.update(4, { model: "tuned" });
    bar.update(5, { model: "tuned" });
    bar.stop();
    bar.stop();
    assert.deepEqual(lines, [
      "generating 1/6 turns | base\n",
      "generating 3/6 turns | base\n",
      "generating 4/6 turns | tuned\n",
      "generating 5/6 turns | tuned\n",
    ]);
  });

  it("names a stage it starts in, and stays quiet between intervals without stages", () => {
    const lines: string[] = [];
    let clock = 0;
    const train = progressBar({
      format: "run {run} |{bar}| {value}/{total} steps | {phase}",
      stage: "stage",
      stream: { write: (text: string) => lines.push(text) },
      now: () => clock,
    });
    train.start(1, 0, { run: 7, phase: "waiting for a worker", stage: "waiting" });
    assert.deepEqual(lines, ["run 7 0/1 steps | waiting for a worker\n"]);
    lines.length = 0;
    const build = progressBar({
      format: "building |{bar}| {value}/{total} chats",
      everyMs: 30_000,
      stream: { write: (text: string) => lines.push(text) },
      now: () => clock,
    });
    build.start(1, 0);
    for (let chat = 1; chat <= 10; chat++) {
      clock += 5_000;
      build.setTotal(10);
      build.update(chat);
    }
    build.stop();
    assert.deepEqual(lines, ["building 1/10 chats\n", "building 7/10 chats\n", "building 10/10 chats\n"]);
  });
});
