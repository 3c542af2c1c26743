import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { wantsLocalWorker } from "./local-worker.ts";
import {
  describeEstimate,
  estimateRun,
  formatDuration,
  formatRange,
  measuredPace,
  needsGpu,
  type Pace,
  priorPace,
  priorSecondsPerStep,
  readTrainerSettings,
  runSchedule,
  timeRun,
} from "./plan.ts";
import type { TimedEvent } from "./runs.repository.ts";
import { TrainerSetupError, TrainPlanError } from "./training.errors.ts";
import type { EstimateParts, RunEstimate } from "./training.tables.ts";

describe("a run's plan", () => {
  const settings = {
    method: "lora",
    epochs: 2,
    maxSteps: 0,
    tokensPerBatch: 1000,
    batching: "packed",
    processes: 0,
    evalEvery: 50,
    maxEvalExamples: 0,
    saveEvery: 100,
    device: "auto",
    gpuMemoryGb: 0,
  };
  const pace: Pace = { source: "rough", setup: 10, step: 1.5, evalPass: 20, checkpoint: 1, finish: 5 };

  it("counts packed rows over the training tokens, times the epochs, unless max_steps says otherwise", () => {
    // 95,000 tokens in rows of 1,000 filled to 95% on average: 100 rows per epoch.
    assert.deepEqual(estimateRun({ trainTokens: 95_000, settings }), { steps: 200, seconds: null });
    assert.deepEqual(estimateRun({ trainTokens: 95_000, settings: { ...settings, epochs: 0.5 } }).steps, 50);
    assert.deepEqual(estimateRun({ trainTokens: 95_000, settings: { ...settings, maxSteps: 7 } }).steps, 7);
    assert.equal(estimateRun({ trainTokens: 10, settings }).steps, 2, "at least one row per epoch");
    assert.equal(
      estimateRun({ trainTokens: 95_000, settings, processes: 8 }).steps,
      26,
      "eight processes take eight rows a step: 200 / 8, rounded up per epoch",
    );
  });

  it("adds up the fixed costs, every evaluation pass and the checkpoints, not the steps alone, with a range", () => {
    const estimate = estimateRun({ trainTokens: 95_000, settings, evalExamples: 40, pace });
    // 200 steps: evaluations at 50, 100, 150 (not at 200: the final one is the tuned model and the
    // base, two passes), checkpoints at 100 and 200.
    assert.deepEqual(runSchedule(200, settings, 40), {
      firstEvalPasses: 0,
      periodicEvalPasses: 3,
      finalEvalPasses: 2,
      checkpoints: 2,
    });
    assert.equal(estimate.seconds, 10 + 200 * 1.5 + 5 * 20 + 2 * 1 + 5);
    assert.deepEqual([estimate.low, estimate.high], [Math.round(417 * 0.7), Math.round(417 * 1.5)]);
    assert.equal(estimate.parts?.finalEvalPasses, 2);
    assert.equal(estimate.parts?.evalExamples, 40);
    const short = estimateRun({
      trainTokens: 95_000,
      settings: { ...settings, maxSteps: 10 },
      evalExamples: 40,
      pace,
    });
    assert.equal(short.seconds, 10 + 15 + 2 * 20 + 1 + 5, "ten steps: the final evaluation outweighs them");
    const none = estimateRun({ trainTokens: 95_000, settings: { ...settings, maxSteps: 10 }, pace });
    assert.equal(none.seconds, 10 + 15 + 1 + 5, "no held-out examples: no evaluation");
    assert.deepEqual(
      runSchedule(10, { ...settings, method: "full", evalEvery: 0, saveEvery: 0 }, 4),
      { firstEvalPasses: 1, periodicEvalPasses: 0, finalEvalPasses: 1, checkpoints: 1 },
      "full fine-tuning measures the base before the first step",
    );
    const measured = estimateRun({
      trainTokens: 95_000,
      settings,
      evalExamples: 40,
      pace: { ...pace, source: "measured" },
    });
    assert.ok(
      (measured.high ?? 0) - (measured.low ?? 0) < (estimate.high ?? 0) - (estimate.low ?? 0),
      "a measured pace's range is narrower than the prior's",
    );
  });

  it("paces an untimed run by the model's size and the hardware, calibrated on this machine", () => {
    const cpu = priorSecondsPerStep({
      parameters: 134.5e6,
      tokensPerBatch: 1024,
      hardware: { gpus: 0, cpus: 2 },
    });
    // Measured on 2 cores (docs/training.md): 4.1–4.4 s per 1,024-token step.
    assert.ok(cpu > 4.2 / 1.5 && cpu < 4.2 * 1.5, `SmolLM2 on 2 cores: ${cpu.toFixed(1)} s per step`);
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
    const prior = priorPace({
      parameters: 134.5e6,
      tokensPerBatch: 1024,
      evalTokens: 33_000,
      datasetTokens: 1_450_000,
      hardware: { gpus: 0, cpus: 2 },
    });
    assert.equal(prior.source, "rough");
    // Measured: 9 s to the first step, 61 s an evaluation pass over 33,000 tokens, 3 s to export.
    assert.ok(prior.setup > 9 / 1.5 && prior.setup < 9 * 1.5, `setup ${prior.setup.toFixed(1)} s`);
    assert.ok(
      prior.evalPass > 61 / 1.5 && prior.evalPass < 61 * 1.5,
      `a pass ${prior.evalPass.toFixed(0)} s`,
    );
    assert.ok(prior.finish > 2 && prior.finish < 10, `export ${prior.finish} s`);
  });

  it("times a finished run's parts from its events and scales them to the next run", () => {
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    const at = (seconds: number) => new Date(t0 + seconds * 1000);
    const events: TimedEvent[] = [
      { event: "queued", data: {}, at: at(-5) },
      { event: "claimed", data: {}, at: at(0) },
      { event: "phase", data: { phase: "loading" }, at: at(1) },
      { event: "phase", data: { phase: "tokenizing" }, at: at(5) },
      { event: "start", data: { steps: 2, eval_examples: 10 }, at: at(9) },
      { event: "log", data: { step: 1 }, at: at(13) },
      { event: "log", data: { step: 2 }, at: at(17) },
      { event: "checkpoint", data: { step: 2 }, at: at(17.5) },
      { event: "phase", data: { phase: "evaluating", passes: 2 }, at: at(18) },
      { event: "eval", data: { step: 2 }, at: at(78) },
      { event: "done", data: {}, at: at(78) },
      { event: "phase", data: { phase: "exporting" }, at: at(79) },
      { event: "phase", data: { phase: "storing" }, at: at(81) },
      { event: "succeeded", data: {}, at: at(82) },
    ];
    assert.deepEqual(timeRun(events), {
      setup: 9,
      stepSeconds: 8,
      steps: 2,
      evalSeconds: 60,
      evalPasses: 2,
      checkpointSeconds: 0.5,
      checkpoints: 1,
      finish: 4.5,
      evalExamples: 10,
    });
    const estimate = { steps: 2, seconds: 80, parts: { tokensPerBatch: 512 } } as RunEstimate;
    assert.deepEqual(measuredPace({ estimate, events }, { tokensPerBatch: 1024, evalExamples: 20 }), {
      source: "measured",
      setup: 9,
      step: 8, // 4 s a step at 512 tokens, twice as long at 1,024
      finish: 4.5,
      evalPass: 60, // 3 s an example and pass, 20 examples
      checkpoint: 0.5,
    });
    assert.equal(
      measuredPace({ estimate: null, events: events.slice(0, 5) }, { tokensPerBatch: 1, evalExamples: 1 }),
      undefined,
      "no step timed: no pace",
    );
  });

  it("says the estimate as a range with its parts", () => {
    const estimate = estimateRun({
      trainTokens: 95_000,
      settings: { ...settings, maxSteps: 10 },
      evalExamples: 34,
      pace: { source: "rough", setup: 9, step: 4.2, evalPass: 61, checkpoint: 1, finish: 4 },
    });
    assert.deepEqual(describeEstimate(estimate), {
      total: "roughly 3 min (2–4 min, from the model's size and this hardware)",
      parts: "loading 9 s, 10 steps × 4.2 s, 2 held-out passes × 1 min (34 examples), export 4 s",
    });
    assert.match(
      describeEstimate({ ...estimate, parts: { ...estimate.parts, source: "measured" } as EstimateParts })
        .total,
      /^about 3 min \(2–4 min, at the last run's pace\)$/,
    );
    assert.deepEqual(describeEstimate({ steps: 3, seconds: null }), {
      total: "unknown until the first steps run; the status shows an ETA",
    });
    assert.equal(formatRange(40, 130), "40 s–2 min");
    assert.equal(formatRange(130, 290), "2–5 min");
    assert.equal(formatRange(3000, 4500), "50 min–1 h 15 min");
  });

  it("reads a config's settings from the trainer, with its defaults and the overrides on top", async () => {
    const read = await readTrainerSettings({ file: "smollm2-135m-lora-cpu.yaml", set: { max_steps: "12" } });
    assert.equal(read.method, "lora");
    assert.equal(read.tokensPerBatch, 1024, "from the file");
    assert.equal(read.maxSteps, 12, "from the override");
    const full = await readTrainerSettings({
      file: "qwen2.5-7b-full-8x80gb.yaml",
      set: { epochs: "1.5", processes: "4", batching: "padded" },
    });
    assert.deepEqual(full, {
      method: "full",
      epochs: 1.5,
      maxSteps: 0,
      tokensPerBatch: 8192,
      batching: "padded",
      processes: 4,
      evalEvery: 50,
      maxEvalExamples: 500,
      saveEvery: 100,
      device: "cuda",
      gpuMemoryGb: 80,
    });
    assert.equal(needsGpu(full), true, "a CUDA config trains only where there is a GPU");
    assert.equal(needsGpu(read), false, "the CPU config trains anywhere");
    assert.equal(needsGpu({ ...read, method: "qlora" }), true, "QLoRA's 4-bit kernels are CUDA's");
    // A file that leaves the keys out: the trainer's own defaults (config.py), not a copy here.
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), "twin-plan-"));
    try {
      fs.writeFileSync(path.join(folder, "bare.yaml"), "lora_r: 8\n");
      assert.deepEqual(await readTrainerSettings({ file: "bare.yaml", set: {} }, { folder }), {
        method: "lora",
        epochs: 2,
        maxSteps: 0,
        tokensPerBatch: 2048,
        batching: "packed",
        processes: 0,
        evalEvery: 50,
        maxEvalExamples: 0,
        saveEvery: 50,
        device: "auto",
        gpuMemoryGb: 0,
      });
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });

  it("refuses files outside trainer/configs, and values the trainer refuses, with its message", async () => {
    await assert.rejects(readTrainerSettings({ file: "../pyproject.toml", set: {} }), TrainPlanError);
    await assert.rejects(
      readTrainerSettings({ file: "nope.yaml", set: {} }),
      /nope\.yaml is not in .*configs \(there: .*smollm2-135m-lora-cpu\.yaml/,
    );
    const refused = async (set: Record<string, string>, message: RegExp) => {
      const error = await readTrainerSettings({ file: "smollm2-135m-lora-cpu.yaml", set }).then(
        () => assert.fail(`${JSON.stringify(set)} was accepted`),
        (error: unknown) => error,
      );
      assert.ok(error instanceof TrainPlanError, String(error));
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /Traceback|^error:/);
    };
    await refused({ epochs: "two" }, /smollm2-135m-lora-cpu\.yaml: --set epochs=two: expected a number/);
    await refused({ batching: "sorted" }, /batching='sorted': expected one of packed, padded/);
    await refused({ nope: "1" }, /--set nope=1: expected key=value with a key among/);
    await assert.rejects(
      readTrainerSettings({ file: "smollm2-135m-lora-cpu.yaml", set: {} }, { python: "/nowhere/python" }),
      TrainerSetupError,
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
