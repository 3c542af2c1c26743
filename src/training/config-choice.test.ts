import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { chooseTrainConfig, parametersFromName, TRAIN_CONFIGS } from "./config-choice.ts";
import { trainerConfigs } from "./plan.ts";
import { TrainPlanError } from "./training.errors.ts";

const smol = { name: "smol", parameters: 134_515_008 };
const qwen7b = { name: "qwen2.5-7b-instruct-q4_k_m", parameters: 7_615_616_512 };
const qwen3b = { name: "qwen2.5-3b-instruct", parameters: 3_085_938_688 };
const rtx4090 = { name: "NVIDIA GeForce RTX 4090", memory_gb: 23.6 };
const a100 = { name: "NVIDIA A100-SXM4-80GB", memory_gb: 79.2 };

describe("the trainer config of a new run", () => {
  it("is the configured one when TWIN_TRAIN_CONFIG (or --config) names one", () => {
    const configured = "my-own.yaml";
    assert.equal(chooseTrainConfig({ method: "lora", configured, base: qwen7b, gpus: [] }), configured);
  });

  it("follows the base's size and the worker's GPUs", () => {
    const lora = (base: typeof smol, gpus: { memory_gb: number }[]) =>
      chooseTrainConfig({ method: "lora", configured: undefined, base, gpus });
    assert.equal(lora(smol, []), "smollm2-135m-lora-cpu.yaml", "a small base trains on the CPU");
    assert.equal(lora(smol, [rtx4090]), "smollm2-135m-lora-cpu.yaml");
    assert.equal(lora(qwen7b, [rtx4090]), "qwen2.5-7b-lora-1x24gb.yaml", "a 7B on a 24 GB card");
    assert.equal(lora(qwen3b, [a100]), "qwen2.5-7b-lora-1x24gb.yaml");
    const full = (base: typeof smol, gpus: { memory_gb: number }[]) =>
      chooseTrainConfig({ method: "full", configured: undefined, base, gpus });
    assert.equal(full(smol, []), "smollm2-135m-full-cpu.yaml");
    assert.equal(full(qwen3b, [a100]), "qwen2.5-3b-full-1x80gb.yaml");
    assert.equal(full(qwen7b, Array(8).fill(a100)), "qwen2.5-7b-full-8x80gb.yaml");
  });

  it("refuses a 7B without a GPU large enough, naming the variable and the config to set", () => {
    const refusal = (method: "lora" | "full") => (error: Error) =>
      error instanceof TrainPlanError &&
      error.message.includes(method === "full" ? "TWIN_TRAIN_CONFIG_FULL" : "TWIN_TRAIN_CONFIG") &&
      error.message.includes(
        method === "full" ? "qwen2.5-7b-full-8x80gb.yaml" : "qwen2.5-7b-lora-1x24gb.yaml",
      ) &&
      error.message.includes("7.6B parameters");
    assert.throws(
      () => chooseTrainConfig({ method: "lora", configured: undefined, base: qwen7b, gpus: [] }),
      refusal("lora"),
      "never the 135M CPU config for a 7B",
    );
    assert.throws(
      () =>
        chooseTrainConfig({
          method: "lora",
          configured: undefined,
          base: qwen7b,
          gpus: [{ memory_gb: 11.7 }],
        }),
      /the worker has 1 GPU of 11\.7 GB/,
    );
    assert.throws(
      () => chooseTrainConfig({ method: "full", configured: undefined, base: qwen7b, gpus: [a100] }),
      refusal("full"),
    );
    assert.throws(
      () =>
        chooseTrainConfig({
          method: "lora",
          configured: undefined,
          base: { name: "llama-70b", parameters: 7e10 },
          gpus: [a100],
        }),
      /no config for the base llama-70b \(70\.0B parameters\).*set TWIN_TRAIN_CONFIG/,
    );
    assert.throws(
      () =>
        chooseTrainConfig({
          method: "lora",
          configured: undefined,
          base: { name: "mystery", parameters: undefined },
          gpus: [],
        }),
      /cannot tell the size of the base mystery.*set TWIN_TRAIN_CONFIG/,
    );
  });

  it("reads a size from a model's name when its GGUF cannot be read, and names only configs that exist", () => {
    assert.equal(parametersFromName("qwen2.5-7b-instruct-q4_k_m"), 7e9);
    assert.equal(parametersFromName("SmolLM2-135M-Instruct.Q4_1"), 135e6);
    assert.equal(parametersFromName("Qwen/Qwen2.5-3B-Instruct"), 3e9);
    assert.equal(parametersFromName("/models/Llama-3.1-8B"), 8e9);
    assert.equal(parametersFromName("smol"), undefined);
    assert.equal(
      chooseTrainConfig({
        method: "lora",
        configured: undefined,
        base: { name: "x-7b", parameters: undefined },
        gpus: [rtx4090],
      }),
      "qwen2.5-7b-lora-1x24gb.yaml",
    );
    for (const file of Object.values(TRAIN_CONFIGS))
      assert.ok(fs.existsSync(`${trainerConfigs}/${file}`), file);
  });
});
