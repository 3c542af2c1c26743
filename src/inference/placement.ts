import path from "node:path";
import type { Llama, LlamaGpuType, LlamaModel } from "node-llama-cpp";
import type { GpuSetting } from "../config/config.ts";

/**
 * Where the served model runs (TWIN_GPU): node-llama-cpp is asked for a GPU backend, the model is
 * loaded with as many layers on the GPU as its free memory holds (`gpuLayers: "auto"`), and a GPU
 * that cannot hold the model leaves it on the CPU with one log line saying so.
 */

/** What `getLlama({ gpu })` is given for a TWIN_GPU setting (pure): "off" is no GPU at all. */
export function llamaGpuOption(setting: GpuSetting): "auto" | Exclude<LlamaGpuType, false> | false {
  return setting === "off" ? false : setting;
}

export type Placement = {
  /** The llama.cpp backend in use: a GPU's ("cuda", "vulkan", "metal"), or false for the CPU only. */
  backend: LlamaGpuType;
  /** The GPU's device names, when the backend has one. */
  gpu: string | undefined;
  /** Layers on the GPU, of all the model's (llama.cpp counts the output layer too). */
  gpuLayers: number;
  totalLayers: number;
  /** The line logged when a GPU was there but could not hold the model, or all of it. */
  fallback: string | undefined;
};

/** The parts of node-llama-cpp's Llama that placing a model uses (a test gives its own). */
export type PlacingLlama = Pick<Llama, "gpu" | "getGpuDeviceNames" | "getVramState" | "loadModel">;

const gigabytes = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB`;

/**
 * Loads `modelPath` on the llama's GPU when it has one, as many layers as fit; when the load on the
 * GPU fails (out of memory), it loads again on the CPU. Either way short of the whole model on the
 * GPU, `log` gets one line saying where it runs and why.
 */
export async function loadPlacedModel(
  llama: PlacingLlama,
  modelPath: string,
  log: (line: string) => void,
): Promise<{ model: LlamaModel; placement: Placement }> {
  const backend = llama.gpu;
  if (backend === false) {
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    return { model, placement: placementOf(model, { backend, gpu: undefined, fallback: undefined }) };
  }
  const names = await llama.getGpuDeviceNames().catch(() => [] as string[]);
  const gpu = names.length > 0 ? [...new Set(names)].join(", ") : backend;
  const vram = await llama.getVramState().catch(() => ({ total: 0, free: 0 }));
  const file = path.basename(modelPath);
  const where = `the GPU (${gpu}, ${backend}; ${gigabytes(vram.free)} free of ${gigabytes(vram.total)})`;
  let model: LlamaModel;
  let fallback: string | undefined;
  try {
    model = await llama.loadModel({ modelPath, gpuLayers: "auto" });
  } catch (error) {
    fallback = `${where} cannot hold ${file} (${(error as Error).message}): serving it on the CPU`;
    log(fallback);
    model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    return { model, placement: placementOf(model, { backend, gpu, fallback }) };
  }
  const total = totalLayers(model);
  if (model.gpuLayers === 0) {
    fallback = `${where} cannot hold any layer of ${file} (${gigabytes(model.size)}): serving it on the CPU`;
  } else if (model.gpuLayers < total) {
    fallback = `${where} holds ${model.gpuLayers} of ${total} layers of ${file} (${gigabytes(model.size)}): the rest runs on the CPU, slower`;
  }
  if (fallback) log(fallback);
  return { model, placement: placementOf(model, { backend, gpu, fallback }) };
}

function totalLayers(model: LlamaModel): number {
  return model.fileInsights.totalLayers;
}

function placementOf(model: LlamaModel, known: Omit<Placement, "gpuLayers" | "totalLayers">): Placement {
  return { ...known, gpuLayers: model.gpuLayers, totalLayers: totalLayers(model) };
}

/** "GPU (NVIDIA RTX 4090, cuda): all 29 layers", "CPU", "CPU and GPU (…): 20 of 29 layers" (pure). */
export function describePlacement(placement: Placement): string {
  const { backend, gpu, gpuLayers, totalLayers: total } = placement;
  if (backend === false) return "CPU";
  if (gpuLayers === 0) return `CPU (the GPU ${gpu} could not hold it)`;
  if (gpuLayers >= total) return `GPU (${gpu}, ${backend}): all ${total} layers`;
  return `CPU and GPU (${gpu}, ${backend}): ${gpuLayers} of ${total} layers on the GPU`;
}
