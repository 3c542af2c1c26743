import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { estimateRun } from "./plan.ts";
import { describePlan, longestExampleTokens, type RunPlan } from "./train.usecase.ts";

describe("a run's plan in words", () => {
  const settings = {
    method: "lora",
    epochs: 2,
    maxSteps: 10,
    tokensPerBatch: 1024,
    batching: "packed",
    processes: 0,
    evalEvery: 50,
    maxEvalExamples: 200,
    saveEvery: 50,
    device: "cpu",
    gpuMemoryGb: 0,
  };
  const plan = {
    dataset: {
      id: 2,
      manifest: {
        counts: {
          sessions: 34,
          chats: 1,
          meanMessagesPerSession: 1163.15,
          examples: 1493,
          trainExamples: 1459,
          evalExamples: 34,
          tokensEstimate: 1_451_700,
        },
      },
    },
    base: { name: "SmolLM2-135M-Instruct.Q4_1" },
    config: { file: "smollm2-135m-lora-cpu.yaml", set: { max_steps: "10" } },
    settings,
    estimate: estimateRun({
      trainTokens: 1_400_000,
      settings,
      evalExamples: 34,
      pace: { source: "rough", setup: 9.4, step: 4.2, evalPass: 68.4, checkpoint: 1, finish: 4 },
    }),
    workers: [],
    processes: 1,
    target: "any" as const,
  } as unknown as RunPlan;

  it("shows the time as a range with the parts it adds up, and says when the machine is busy", () => {
    const text = describePlan(plan);
    assert.match(
      text,
      /\n10 steps of 1,024 tokens; time: roughly 3 min \(2–5 min, from the model's size and this hardware\)\.\nWhere the time goes: loading 9 s, 10 steps × 4\.2 s, 2 held-out passes × 1 min \(34 examples\), export 4 s; the status corrects it once steps run\.\nTrains on: a local worker on this machine\.$/,
      text,
    );
    assert.match(
      describePlan({ ...plan, load: { average: 4.2, cpus: 2 } }),
      /\nThis machine is busy \(load 4\.2 on 2 cores\): training shares it and takes longer\.\n/,
    );
    assert.doesNotMatch(describePlan({ ...plan, load: { average: 1.2, cpus: 2 } }), /busy/);
  });
});

describe("the longest example a run's rows must hold", () => {
  it("is the split length, plus the memory turn's budget when the dataset recalls", () => {
    assert.equal(longestExampleTokens({ settings: { maxTokens: 1024 } }), 1024);
    const memory = { enabled: true, windows: 3, queryTurns: 3, maxTokens: 512, recentMessages: 600 };
    assert.equal(longestExampleTokens({ settings: { maxTokens: 1024, memory } }), 1024 + 512 + 16);
    assert.equal(
      longestExampleTokens({ settings: { maxTokens: 1024, memory: { ...memory, enabled: false } } }),
      1024,
    );
  });
});
