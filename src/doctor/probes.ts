import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Llama } from "node-llama-cpp";
import { parse } from "yaml";
import type { Repositories } from "../app.ts";
import type { Config, GpuSetting } from "../config/config.ts";
import { environmentForChild } from "../config/env.ts";
import type { Manifest } from "../dataset/manifest.ts";
import type { Engine } from "../inference/engine.ts";
import { ggufParts } from "../models/gguf-facts.ts";
import { trainerDir, trainerPython } from "../training/local-worker.ts";
import { type TrainerSettings, trainerConfigs } from "../training/plan.ts";
import type { DoctorFacts, ServedFacts, ServingGpu, TrainerFacts, TrainingGpu } from "./report.ts";

/**
 * `twin doctor`, the I/O half: what this machine has — CPU, RAM, disk, memory bandwidth, the GPU
 * node-llama-cpp serves on, the GPUs PyTorch trains on (the trainer's own `hardware()` report), the
 * history's script, the latest dataset, and the served model with its measured speed.
 */

const GB = 1e9;

/** CPU flags that decide llama.cpp's and PyTorch's kernels (x86 and Arm names), in this order. */
const CPU_FEATURES = [
  "avx",
  "avx2",
  "fma",
  "f16c",
  "avx_vnni",
  "avx512f",
  "avx512bw",
  "avx512_vnni",
  "avx512_bf16",
  "amx_tile",
  "amx_bf16",
  "asimd",
  "asimddp",
  "i8mm",
  "sve",
  "bf16",
];

/** The CPU's model, cores and kernel-relevant flags: /proc/cpuinfo, else llama.cpp's system info. */
export function cpuFacts(llamaSystemInfo?: string | undefined): DoctorFacts["cpu"] {
  const cpus = os.cpus();
  let flags: Set<string> | undefined;
  try {
    const info = fs.readFileSync("/proc/cpuinfo", "utf8");
    const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info)?.[1];
    if (line) flags = new Set(line.trim().split(/\s+/));
  } catch {
    // not Linux: llama.cpp's system info below
  }
  if (!flags && llamaSystemInfo) {
    flags = new Set(
      [...llamaSystemInfo.matchAll(/([A-Z0-9_]+) = 1/g)].map((m) => (m[1] as string).toLowerCase()),
    );
  }
  return {
    model: cpus[0]?.model.trim() || os.arch(),
    cores: os.availableParallelism(),
    features: CPU_FEATURES.filter((flag) => flags?.has(flag)),
  };
}

/** RAM in GB: the total, and what Linux says is available (MemAvailable; else Node's free memory). */
export function ramFacts(): DoctorFacts["ram"] {
  let available = os.freemem();
  try {
    const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1];
    if (kib) available = Number(kib) * 1024;
  } catch {
    // not Linux
  }
  return { totalGb: round2(os.totalmem() / GB), availableGb: round2(available / GB) };
}

/** Free space where the data folder is (or would be: its nearest existing parent). */
export function diskFacts(dataDir: string): DoctorFacts["disk"] {
  let dir = path.resolve(dataDir);
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  try {
    const stats = fs.statfsSync(dir);
    return {
      path: dataDir,
      freeGb: round2((stats.bavail * stats.bsize) / GB),
      totalGb: round2((stats.blocks * stats.bsize) / GB),
    };
  } catch {
    return null;
  }
}

const COPY_BYTES = 256 * 2 ** 20;
const COPY_ROUNDS = 5;

/**
 * Memory bandwidth, measured here: a 256 MB buffer (less on a machine under 4 GB) copied 5 times
 * after a warm-up, the fastest copy counted as reading and writing every byte. One thread copies,
 * as llama.cpp's decoding on few cores is about one thread's bandwidth. Blocks for ~0.1–0.5 s.
 */
export function measureBandwidth(): NonNullable<DoctorFacts["bandwidth"]> {
  const bytes = Math.min(COPY_BYTES, Math.floor(os.totalmem() / 16));
  const source = Buffer.alloc(bytes, 1);
  const target = Buffer.alloc(bytes);
  source.copy(target);
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < COPY_ROUNDS; round++) {
    const start = process.hrtime.bigint();
    source.copy(target);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  const megabytes = Math.round(bytes / 2 ** 20);
  return {
    gbPerSecond: round2((2 * bytes) / best / GB),
    basis: `the fastest of ${COPY_ROUNDS} copies of a ${megabytes} MB buffer in this process, read + write`,
  };
}

let measured: NonNullable<DoctorFacts["bandwidth"]> | undefined;

/** measureBandwidth once per process: the bot's /status measures at its first call only. */
export function bandwidthOnce(): NonNullable<DoctorFacts["bandwidth"]> {
  measured ??= measureBandwidth();
  return measured;
}

/** The serving GPU as node-llama-cpp reports it, or why none could be had (`error`). */
export async function servingGpuFacts(
  setting: GpuSetting,
  llama: Llama | undefined,
  error?: unknown,
): Promise<ServingGpu> {
  if (!llama) {
    return {
      setting,
      backend: false,
      devices: [],
      vramTotalGb: 0,
      vramFreeGb: 0,
      error: error ? (error as Error).message : undefined,
    };
  }
  const backend = llama.gpu;
  if (backend === false) return { setting, backend, devices: [], vramTotalGb: 0, vramFreeGb: 0 };
  const devices = await llama.getGpuDeviceNames().catch(() => [] as string[]);
  const vram = await llama.getVramState().catch(() => ({ total: 0, free: 0 }));
  return {
    setting,
    backend,
    devices,
    vramTotalGb: round2(vram.total / GB),
    vramFreeGb: round2(vram.free / GB),
  };
}

/**
 * The trainer environment's view, from the worker's own `hardware()` (what it reports when it
 * claims runs: PyTorch's GPUs, CPUs, memory) plus each GPU's free memory and whether bitsandbytes
 * (QLoRA) imports. Older trainers without `hardware()` get the same from PyTorch directly.
 */
const TRAINER_SCRIPT = `
import json
try:
    from twin_trainer.worker import hardware
    facts = hardware()
except ImportError:
    import os, torch
    facts = {"device": "cpu", "gpus": [], "cpus": os.cpu_count(), "torch": torch.__version__}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            facts["gpus"].append({"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
        facts["device"] = "cuda"
import torch
if torch.cuda.is_available():
    for i, gpu in enumerate(facts["gpus"]):
        try:
            gpu["free_gb"] = round(torch.cuda.mem_get_info(i)[0] / 2**30, 1)
        except Exception:
            pass
try:
    import bitsandbytes  # noqa: F401
    facts["bitsandbytes"] = True
except Exception:
    facts["bitsandbytes"] = False
print(json.dumps(facts))
`;

export async function probeTrainer(configured: string | undefined): Promise<TrainerFacts> {
  let python: string;
  try {
    python = trainerPython(configured);
  } catch (error) {
    return { available: false, python: configured, reason: (error as Error).message };
  }
  const stdout = await new Promise<string | Error>((resolve) => {
    execFile(
      python,
      ["-c", TRAINER_SCRIPT],
      { cwd: trainerDir, env: environmentForChild(), timeout: 120_000, maxBuffer: 1 << 20 },
      (error, out, err) => {
        if (!error) return resolve(out);
        const last = String(err).trim().split("\n").at(-1);
        resolve(new Error(error.killed ? "it did not answer within 120 s" : last || error.message));
      },
    );
  });
  if (stdout instanceof Error) {
    return {
      available: false,
      python,
      reason: `the trainer's environment (${python}) cannot report its hardware: ${stdout.message}`,
    };
  }
  try {
    const facts = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as {
      device?: string;
      gpus?: { name?: string; memory_gb?: number; free_gb?: number }[];
      cpus?: number;
      torch?: string;
      bitsandbytes?: boolean;
    };
    const gpus: TrainingGpu[] = (facts.gpus ?? []).map((gpu) => ({
      name: gpu.name ?? "GPU",
      memoryGb: gpu.memory_gb ?? 0,
      ...(gpu.free_gb !== undefined ? { freeGb: gpu.free_gb } : {}),
    }));
    return {
      available: true,
      python,
      torch: facts.torch ?? "unknown",
      device: facts.device ?? (gpus.length > 0 ? "cuda" : "cpu"),
      gpus,
      cpus: facts.cpus ?? os.availableParallelism(),
      bitsandbytes: facts.bitsandbytes,
    };
  } catch (error) {
    return {
      available: false,
      python,
      reason: `the trainer's environment (${python}) printed no hardware report: ${(error as Error).message}`,
    };
  }
}

/**
 * The settings of every config in trainer/configs that an estimate needs, read from the files
 * (the keys they leave out take 0: no step limit, no periodic evaluation or checkpoint).
 */
export function readTrainerConfigs(folder = trainerConfigs): Record<string, TrainerSettings> {
  const settings: Record<string, TrainerSettings> = {};
  // The bot's container image has no trainer/: no configs, and the estimates take the defaults.
  const files = fs.existsSync(folder) ? fs.readdirSync(folder) : [];
  for (const file of files.filter((name) => /\.ya?ml$/.test(name))) {
    try {
      const values = (parse(fs.readFileSync(path.join(folder, file), "utf8")) ?? {}) as Record<
        string,
        unknown
      >;
      const number = (key: string, fallback: number) =>
        typeof values[key] === "number" ? (values[key] as number) : fallback;
      settings[file] = {
        method: typeof values.method === "string" ? values.method : "lora",
        epochs: number("epochs", 1),
        maxSteps: number("max_steps", 0),
        tokensPerBatch: number("tokens_per_batch", 4096),
        batching: typeof values.batching === "string" ? values.batching : "packed",
        processes: number("processes", 0),
        evalEvery: number("eval_every", 0),
        maxEvalExamples: number("max_eval_examples", 0),
        saveEvery: number("save_every", 0),
        device: typeof values.device === "string" ? values.device : "auto",
        gpuMemoryGb: number("gpu_memory_gb", 0),
      };
    } catch {
      // a config the trainer would refuse is not one to recommend
    }
  }
  return settings;
}

/** The history's script and the latest ready dataset's counts. */
export async function storedFacts(
  repositories: Pick<Repositories, "history" | "dataset">,
): Promise<Pick<DoctorFacts, "history" | "dataset">> {
  const script = await repositories.history.ownerScript();
  const ready = await repositories.dataset.latestReady();
  const counts = (ready?.manifest as Manifest | undefined)?.counts;
  return {
    history: { ownerMessages: script.messages, cyrillicShare: script.cyrillicShare },
    dataset:
      ready && counts
        ? {
            id: ready.id,
            tokensEstimate: counts.tokensEstimate,
            examples: counts.examples,
            trainExamples: counts.trainExamples,
            evalExamples: counts.evalExamples,
          }
        : null,
  };
}

/** A GGUF's size on disk, all its parts, in GB; null when unreadable. */
export function ggufSizeGb(file: string): number | null {
  try {
    return round2(ggufParts(file).reduce((sum, part) => sum + fs.statSync(part).size, 0) / GB);
  } catch {
    return null;
  }
}

/**
 * The served model as the engine loaded it: where it runs, and its speed — the engine's recent
 * replies when it has any (the bot), else a short generation measured now (`measure`).
 */
export async function servedFacts(
  engine: Engine,
  name: string,
  options: { measure: boolean },
): Promise<ServedFacts> {
  const recent = engine.speed.rate() ?? (options.measure ? await engine.measureSpeed() : undefined);
  return {
    name,
    path: engine.options.modelPath,
    sizeGb: ggufSizeGb(engine.options.modelPath),
    parameters: [...engine.facts.shapes.values()].reduce(
      (sum, dims) => sum + dims.reduce((a, b) => a * b, 1),
      0,
    ),
    placement: engine.placement,
    measured: recent ? { tokensPerSecond: round2(recent.tokensPerSecond), tokens: recent.tokens } : null,
    error: null,
  };
}

/** A model that is registered (or configured) but was not loaded: `error` says why, if it failed. */
export function unloadedServedFacts(name: string, modelPath: string, error: unknown): ServedFacts {
  return {
    name,
    path: modelPath,
    sizeGb: ggufSizeGb(modelPath),
    parameters: null,
    placement: null,
    measured: null,
    error: error ? (error as Error).message : null,
  };
}

/** Every fact the report needs; `llama` is the serving one (the engine's, or one opened for this). */
export async function gatherFacts(
  input: {
    config: Config;
    repositories: Pick<Repositories, "history" | "dataset">;
    llama: Llama | undefined;
    llamaError?: unknown;
    served: ServedFacts | null;
    /** Asks the trainer's environment (a Python process, seconds); the bot's /status does not. */
    trainer: boolean;
  },
  bandwidth: () => NonNullable<DoctorFacts["bandwidth"]> = measureBandwidth,
): Promise<DoctorFacts> {
  const { config } = input;
  // Measured first, alone: the trainer's Python below would share the cores.
  const copied = bandwidth();
  const trainer = input.trainer
    ? probeTrainer(config.training.python)
    : Promise.resolve<TrainerFacts>({
        available: false,
        python: config.training.python,
        reason: "not asked",
      });
  const stored = await storedFacts(input.repositories);
  return {
    cpu: cpuFacts(input.llama?.systemInfo),
    ram: ramFacts(),
    disk: diskFacts(config.dataDir),
    bandwidth: copied,
    servingGpu: await servingGpuFacts(config.inference.gpu, input.llama, input.llamaError),
    trainer: await trainer,
    ...stored,
    served: input.served,
    contextTokens: config.inference.contextSize * config.inference.sequences,
    trainerConfigs: readTrainerConfigs(),
  };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
