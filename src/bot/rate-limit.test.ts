import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RateLimiter } from "./rate-limit.ts";

describe("the per-person rate limit", () => {
  it("lets the limit through, tells once, stays quiet, and forgets after a minute", () => {
    let now = 0;
    const limiter = new RateLimiter(3, () => now);
    assert.deepEqual(
      [1, 2, 3].map(() => limiter.hit(7)),
      ["ok", "ok", "ok"],
    );
    assert.equal(limiter.hit(7), "limited", "the first message over the limit is answered politely");
    assert.equal(limiter.hit(7), "limited-again", "the next ones are dropped quietly");
    assert.equal(limiter.hit(8), "ok", "another person has their own window");
    now = 61_000;
    assert.equal(limiter.hit(7), "ok", "a minute later the window is empty again");
  });
});
