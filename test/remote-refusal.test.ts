import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BaseModel } from "../src/models/models.repository.ts";
import { parsePreflight } from "../src/remote/preflight.ts";
import { remoteRefusal } from "../src/remote/remote-worker.ts";
import type { TrainingRun } from "../src/training/runs.repository.ts";
import { testModel } from "./support/models.ts";

describe("a run a remote machine cannot train", () => {
  const base = { ggufPath: testModel() } as BaseModel;
  const run = (overrides: Partial<TrainingRun>) =>
    ({
      method: "lora",
      needsGpu: false,
      config: { file: "smollm2-135m-lora-cpu.yaml", set: {} },
      ...overrides,
    }) as TrainingRun;
  const onGpu = (memoryGb: number) => ({
    ...parsePreflight("python=/usr/bin/python3"),
    gpus: [{ name: "NVIDIA T4", memoryGb, driver: "550" }],
  });
  const noGpu = parsePreflight("python=/usr/bin/python3");

  it("is refused before anything downloads: full fine-tuning, a GPU run without a GPU, a card too small by the trainer's estimate", async () => {
    assert.match(
      (await remoteRefusal(undefined, onGpu(80), run({ method: "full" }), base)) ?? "",
      /full fine-tuning stays/,
    );
    assert.match(
      (await remoteRefusal(undefined, noGpu, run({ needsGpu: true }), base)) ?? "",
      /needs a GPU and there is none/,
    );
    assert.match(
      (await remoteRefusal(undefined, onGpu(0.05), run({}), base)) ?? "",
      /does not fit NVIDIA T4 \(0\.05 GB\)/,
    );
    assert.equal(
      await remoteRefusal(undefined, onGpu(16), run({}), base),
      undefined,
      "the test model fits 16 GB",
    );
    assert.equal(
      await remoteRefusal(undefined, noGpu, run({}), base),
      undefined,
      "a CPU run trains on the CPU",
    );
    assert.match(
      (await remoteRefusal(undefined, noGpu, run({}), {
        ...base,
        name: "mine",
        hfSource: "/srv/models/qwen-hf",
      })) ?? "",
      /the base mine trains from weights in a folder on this machine \(\/srv\/models\/qwen-hf\), which a remote cannot fetch/,
    );
    assert.equal(
      await remoteRefusal(undefined, noGpu, run({}), { ...base, hfSource: "Qwen/Qwen2.5-7B-Instruct" }),
      undefined,
      "hub weights: the remote fetches them",
    );
  });
});
