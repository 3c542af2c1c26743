import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { typedLines } from "./typed-lines.ts";

describe("typedLines", () => {
  it("keeps what is typed while nobody waits, and hands it over as one burst up to a command", async () => {
    const input = new EventEmitter();
    const lines = typedLines(input);
    const first = lines.next();
    input.emit("line", "hi");
    assert.equal(await first, "hi");
    // Typed while the twin answers: nobody waits, nothing is lost.
    for (const line of ["one", "two", "/reset", "three"]) input.emit("line", line);
    assert.deepEqual(lines.takeQueued(), ["one", "two"], "the burst stops at a command");
    assert.equal(await lines.next(), "/reset");
    assert.deepEqual(lines.takeQueued(), ["three"]);
    assert.deepEqual(lines.takeQueued(), []);
  });

  it("ends once the input closes and the queue is empty", async () => {
    const input = new EventEmitter();
    const lines = typedLines(input);
    input.emit("line", "last words");
    const waiting = (async () => [await lines.next(), await lines.next()])();
    input.emit("close");
    assert.deepEqual(await waiting, ["last words", undefined]);
    assert.equal(await lines.next(), undefined);
  });
});
