import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { wantsLocalWorker } from "./local-worker.ts";
import {
  estimateRun,
  formatDuration,
  priorSecondsPerStep,
  readTrainerSettings,
  TrainPlanError,
} from "./plan.ts";

describe("a run's plan", () => {
  const settings = {
    method: "lora",
    epochs: 2,
    maxSteps: 0,
    tokensPerBatch: 1000,
    batching: "packed",
    processes: 0,
  };

  it("counts packed rows over the training tokens, times the epochs, unless max_steps says otherwise", () => {
    // 95,000 tokens in rows of 1,000 filled to 95% on average: 100 rows per epoch.
    assert.deepEqual(estimateRun({ trainTokens: 95_000, settings }), { steps: 200, seconds: null });
    assert.deepEqual(estimateRun({ trainTokens: 95_000, settings: { ...settings, epochs: 0.5 } }).steps, 50);
    assert.deepEqual(estimateRun({ trainTokens: 95_000, settings: { ...settings, maxSteps: 7 } }).steps, 7);
    assert.equal(estimateRun({ trainTokens: 10, settings }).steps, 2, "at least one row per epoch");
    assert.equal(estimateRun({ trainTokens: 95_000, settings, secondsPerStep: 1.5 }).seconds, 300);
    assert.equal(
      estimateRun({ trainTokens: 95_000, settings, processes: 8 }).steps,
      26,
      "eight processes take eight rows a step: 200 / 8, rounded up per epoch",
    );
  });

  it("paces an untimed run by the model's size and the hardware", () => {
    const cpu = priorSecondsPerStep({
      parameters: 135e6,
      tokensPerBatch: 400,
      hardware: { gpus: 0, cpus: 2 },
    });
    assert.ok(
      cpu > 1 && cpu < 6,
      `SmolLM2 on 2 cores: ${cpu.toFixed(1)} s per 400-token step (3 s measured)`,
    );
    const gpu = priorSecondsPerStep({
      parameters: 7.6e9,
      tokensPerBatch: 2048,
      hardware: { gpus: 1, cpus: 16 },
    });
    assert.ok(gpu > 1 && gpu < 10, `Qwen2.5-7B on one GPU: ${gpu.toFixed(1)} s per 2,048-token step`);
    const full = priorSecondsPerStep({
      parameters: 7.6e9,
      tokensPerBatch: 2048,
      hardware: { gpus: 8, cpus: 16 },
      method: "full",
    });
    assert.ok(full > gpu && full < 1.5 * gpu, "a full step also computes the weights' gradients");
  });

  it("reads a config's settings with overrides on top, and refuses files outside trainer/configs", () => {
    const read = readTrainerSettings({ file: "smollm2-135m-lora-cpu.yaml", set: { max_steps: "12" } });
    assert.equal(read.method, "lora");
    assert.equal(read.tokensPerBatch, 1024, "from the file");
    assert.equal(read.maxSteps, 12, "from the override");
    assert.throws(() => readTrainerSettings({ file: "../pyproject.toml", set: {} }), TrainPlanError);
    assert.throws(
      () => readTrainerSettings({ file: "nope.yaml", set: {} }),
      /nope\.yaml is not in .*configs \(there: .*smollm2-135m-lora-cpu\.yaml/,
    );
    assert.throws(
      () => readTrainerSettings({ file: "smollm2-135m-lora-cpu.yaml", set: { epochs: "two" } }),
      /epochs=two is not a number/,
    );
  });

  it("formats durations", () => {
    assert.equal(formatDuration(40), "40 s");
    assert.equal(formatDuration(720), "12 min");
    assert.equal(formatDuration(3 * 3600 + 5 * 60), "3 h 05 min");
  });

  it("starts a local worker only when the mode and the live workers say so", () => {
    assert.equal(wantsLocalWorker("local", 3), true);
    assert.equal(wantsLocalWorker("external", 0), false);
    assert.equal(wantsLocalWorker("auto", 0), true, "auto: nobody else trains");
    assert.equal(wantsLocalWorker("auto", 1), false, "auto: an external worker is alive");
  });
});
