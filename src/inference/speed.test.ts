import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeSpeed, SpeedMeter } from "./speed.ts";

describe("the engine's speed meter", () => {
  it("counts tokens after each generation's first, over the time since it", () => {
    const meter = new SpeedMeter();
    const clock = [1000, 1100, 1200, 1500];
    const timer = meter.timer(() => clock.shift() as number);
    timer.tick(1); // the first token: the prompt's evaluation ends here
    timer.tick(1);
    timer.tick(2);
    timer.tick(1);
    timer.stop();
    assert.deepEqual(meter.rate(), { tokensPerSecond: 4 / 0.5, replies: 1, tokens: 4 });
  });

  it("keeps the latest generations only, and skips empty ones", () => {
    const meter = new SpeedMeter(2);
    assert.equal(meter.rate(), undefined);
    assert.equal(describeSpeed(meter.rate()), "no reply generated yet");
    meter.record(100, 1);
    meter.record(10, 1);
    meter.record(30, 1);
    meter.record(0, 0);
    assert.deepEqual(meter.rate(), { tokensPerSecond: 20, replies: 2, tokens: 40 });
    assert.equal(describeSpeed(meter.rate()), "20 tokens/s over the last 2 replies");
    const one = new SpeedMeter();
    one.record(7, 2);
    assert.equal(describeSpeed(one.rate()), "3.5 tokens/s over the last reply");
  });
});
