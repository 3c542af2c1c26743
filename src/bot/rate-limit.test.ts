import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RateWindow } from "./rate-limit.ts";

describe("the per-person rate window", () => {
  it("lets the limit through, says when there is room again, and forgets after a minute", () => {
    let now = 0;
    const window = new RateWindow(3, 60_000, () => now);
    assert.deepEqual(
      [1, 2, 3].map(() => window.take(7)),
      [true, true, true],
    );
    assert.equal(window.take(7), false, "the fourth message in a minute is over the limit");
    assert.equal(window.room(7), 0);
    assert.equal(window.take(8), true, "another person has their own window");
    now = 10_000;
    window.take(8);
    assert.equal(window.wait(7), 50_000, "room again when the oldest message is a minute old");
    now = 60_000;
    assert.equal(window.room(7), 3, "a minute later the window is empty again");
    assert.equal(window.wait(7), 0);
    assert.equal(window.room(8), 2, "the second person's later message still counts");
  });
});
