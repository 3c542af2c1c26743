import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Llama, LlamaGpuType, LlamaModel, LlamaModelOptions } from "node-llama-cpp";
import { openLlama } from "./engine.ts";
import { GpuUnavailableError } from "./inference.errors.ts";
import { describePlacement, llamaGpuOption, loadPlacedModel, type PlacingLlama } from "./placement.ts";

/**
 * A stand-in for node-llama-cpp's Llama as a GPU machine reports it: its backend, device, free
 * memory, and how many layers a load with gpuLayers "auto" puts on it (or that such a load fails).
 * The real CUDA path needs a GPU, which the machines these tests run on do not have.
 */
function fakeLlama(gpu: {
  backend: LlamaGpuType;
  fits: number | "fails";
  totalLayers?: number;
}): PlacingLlama & { loads: LlamaModelOptions["gpuLayers"][] } {
  const loads: LlamaModelOptions["gpuLayers"][] = [];
  const totalLayers = gpu.totalLayers ?? 29;
  return {
    loads,
    gpu: gpu.backend,
    getGpuDeviceNames: async () => (gpu.backend ? ["NVIDIA GeForce RTX 3060"] : []),
    getVramState: async () => ({ total: 12e9, used: 8e9, free: 4e9, unifiedSize: 0 }),
    loadModel: async (options: LlamaModelOptions) => {
      loads.push(options.gpuLayers);
      if (options.gpuLayers === "auto" && gpu.fits === "fails")
        throw new Error("Not enough VRAM to fit the model with the specified settings");
      const layers = options.gpuLayers === "auto" ? (gpu.fits as number) : 0;
      return { gpuLayers: layers, size: 4.7e9, fileInsights: { totalLayers } } as unknown as LlamaModel;
    },
  } as PlacingLlama & { loads: LlamaModelOptions["gpuLayers"][] };
}

const modelPath = "/models/qwen2.5-7b-instruct-q4_k_m.gguf";

describe("where the served model runs (TWIN_GPU)", () => {
  it("asks node-llama-cpp for the backend TWIN_GPU names, none for off", () => {
    assert.equal(llamaGpuOption("off"), false);
    assert.equal(llamaGpuOption("auto"), "auto");
    assert.equal(llamaGpuOption("cuda"), "cuda");
    assert.equal(llamaGpuOption("vulkan"), "vulkan");
    assert.equal(llamaGpuOption("metal"), "metal");
  });

  it("puts every layer on a GPU that holds the model, and logs nothing", async () => {
    const lines: string[] = [];
    const llama = fakeLlama({ backend: "cuda", fits: 29 });
    const { placement } = await loadPlacedModel(llama, modelPath, (line) => lines.push(line));
    assert.deepEqual(llama.loads, ["auto"], "gpuLayers: auto");
    assert.deepEqual(lines, []);
    assert.equal(placement.gpuLayers, 29);
    assert.equal(describePlacement(placement), "GPU (NVIDIA GeForce RTX 3060, cuda): all 29 layers");
  });

  it("falls back to the CPU with one line when the load on the GPU fails", async () => {
    const lines: string[] = [];
    const llama = fakeLlama({ backend: "cuda", fits: "fails" });
    const { placement } = await loadPlacedModel(llama, modelPath, (line) => lines.push(line));
    assert.deepEqual(llama.loads, ["auto", 0], "loaded again with no layer on the GPU");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(
      lines[0] ?? "",
      /^the GPU \(NVIDIA GeForce RTX 3060, cuda; 4\.0 GB free of 12\.0 GB\) cannot hold qwen2\.5-7b-instruct-q4_k_m\.gguf \(Not enough VRAM.*\): serving it on the CPU$/,
    );
    assert.equal(placement.gpuLayers, 0);
    assert.equal(placement.fallback, lines[0]);
    assert.equal(describePlacement(placement), "CPU (the GPU NVIDIA GeForce RTX 3060 could not hold it)");
  });

  it("says so in one line when the GPU can hold no layer, or only some", async () => {
    const none: string[] = [];
    await loadPlacedModel(fakeLlama({ backend: "vulkan", fits: 0 }), modelPath, (line) => none.push(line));
    assert.equal(none.length, 1);
    assert.match(none[0] ?? "", /cannot hold any layer of .*: serving it on the CPU$/);
    const some: string[] = [];
    const { placement } = await loadPlacedModel(fakeLlama({ backend: "cuda", fits: 12 }), modelPath, (line) =>
      some.push(line),
    );
    assert.equal(some.length, 1);
    assert.match(some[0] ?? "", /holds 12 of 29 layers .*: the rest runs on the CPU, slower$/);
    assert.match(describePlacement(placement), /^CPU and GPU \(.*\): 12 of 29 layers on the GPU$/);
  });

  it("loads on the CPU without a word when there is no GPU backend", async () => {
    const lines: string[] = [];
    const llama = fakeLlama({ backend: false, fits: 0 });
    const { placement } = await loadPlacedModel(llama, modelPath, (line) => lines.push(line));
    assert.deepEqual(llama.loads, [0]);
    assert.deepEqual(lines, []);
    assert.equal(describePlacement(placement), "CPU");
  });

  it("refuses a backend TWIN_GPU names that cannot run here, naming the variable", async () => {
    const asked: unknown[] = [];
    const failing = async (options: unknown) => {
      asked.push(options);
      throw new Error("The prebuilt binary for cuda is not compatible with this machine");
    };
    await assert.rejects(
      openLlama("cuda", failing),
      (error: Error) =>
        error instanceof GpuUnavailableError &&
        /^TWIN_GPU=cuda: node-llama-cpp cannot use cuda on this machine \(The prebuilt binary/.test(
          error.message,
        ) &&
        /TWIN_GPU=auto/.test(error.message),
    );
    assert.deepEqual(asked, [{ gpu: "cuda", build: "never", logLevel: "error" }]);
    await assert.rejects(openLlama("auto", failing), /^Error: The prebuilt binary/, "auto: as it failed");
    const off = await openLlama("off", async (options) => ({ options }) as unknown as Llama);
    assert.deepEqual((off as unknown as { options: unknown }).options, {
      gpu: false,
      build: "never",
      logLevel: "error",
    });
  });
});
