import type { GpuSetting } from "../config/config.ts";
import type { Placement } from "../inference/placement.ts";
import { type Catalogue, type CatalogueEntry, Q4_K_M_BITS, servingMemoryGb } from "../models/catalogue.ts";
import { TRAIN_CONFIGS } from "../training/config-choice.ts";
import { estimateRun, priorPace, type TrainerSettings } from "../training/plan.ts";

/**
 * `twin doctor`, the pure half: from what a machine has (DoctorFacts, gathered by probes.ts) to
 * what it allows — the catalogue entry to serve at a usable speed, the training method and config,
 * roughly how long an epoch takes, and what is missing. Every figure says what it is based on.
 */

/** A GPU as PyTorch reports it in the trainer's environment (GB: 10^9 bytes). */
export type TrainingGpu = { name: string; memoryGb: number; freeGb?: number | undefined };

export type TrainerFacts =
  | {
      available: true;
      python: string;
      torch: string;
      /** "cuda" when PyTorch sees a GPU, else "cpu". */
      device: string;
      gpus: TrainingGpu[];
      cpus: number;
      /** QLoRA needs it (CUDA only); undefined when not asked. */
      bitsandbytes?: boolean | undefined;
    }
  | { available: false; python: string | undefined; reason: string };

/** The GPU node-llama-cpp serves on (TWIN_GPU), as its getLlama reports it. */
export type ServingGpu = {
  setting: GpuSetting;
  /** The backend getLlama chose: "cuda", "vulkan", "metal", or false (the CPU only). */
  backend: "cuda" | "vulkan" | "metal" | false;
  devices: string[];
  vramTotalGb: number;
  vramFreeGb: number;
  /** Why no GPU backend could be had, when one was asked for by name. */
  error?: string | undefined;
};

/** The model served now, loaded the way the bot loads it, and its measured speed. */
export type ServedFacts = {
  name: string;
  path: string;
  sizeGb: number | null;
  /** From its GGUF's tensor shapes, when readable. */
  parameters: number | null;
  /** Null when it was not loaded (`--no-model`, or the load failed: `error`). */
  placement: Placement | null;
  measured: { tokensPerSecond: number; tokens: number } | null;
  error: string | null;
};

export type DoctorFacts = {
  cpu: { model: string; cores: number; features: string[] };
  ram: { totalGb: number; availableGb: number };
  disk: { path: string; freeGb: number; totalGb: number } | null;
  /** Memory bandwidth measured in this process (GB/s), and how it was measured. */
  bandwidth: { gbPerSecond: number; basis: string } | null;
  servingGpu: ServingGpu;
  trainer: TrainerFacts;
  /** The owner's messages and the Cyrillic share of their letters; null without a database. */
  history: { ownerMessages: number; cyrillicShare: number | null } | null;
  /** The latest ready dataset's counts. */
  dataset: {
    id: number;
    tokensEstimate: number;
    examples: number;
    trainExamples: number;
    evalExamples: number;
  } | null;
  served: ServedFacts | null;
  /** Tokens of KV cache the bot allocates: TWIN_CONTEXT_SIZE × TWIN_SEQUENCES. */
  contextTokens: number;
  /** trainer/configs, by file name. */
  trainerConfigs: Record<string, TrainerSettings>;
};

/** A reply of ~40 tokens within ~8 s: below this a friend waits noticeably for each answer. */
export const USABLE_TOKENS_PER_SECOND = 5;
/**
 * Decoding FLOPs a CPU core sustains on quantized weights: 2 FLOPs per parameter and token, at the
 * 167 tokens/s the 135M test model decodes on 2 cores (bin/twin.js, bench/inference).
 */
export const CPU_DECODE_FLOPS_PER_CORE = 2.2e10;
/** Share of the measured copy bandwidth that llama.cpp's weight reads reach while decoding. */
export const BANDWIDTH_EFFICIENCY = 0.8;
/** A GPU's memory bandwidth, assumed (node-llama-cpp does not report it; a mid-range card). */
export const ASSUMED_GPU_GB_PER_SECOND = 300;
/** Share of available RAM (free VRAM) a served model may take: PostgreSQL, Node and the OS need the rest. */
const RAM_SHARE = 0.8;
const VRAM_SHARE = 0.95;
/** A history whose letters are at least this Cyrillic is taken as written in Russian (or another Cyrillic language). */
export const CYRILLIC_HISTORY = 0.3;
/** trainer/configs has configs for bases up to ~9B parameters (config-choice.ts); none above. */
const LARGEST_WITH_CONFIG = 9e9;
/** Below this a base trains on a CPU with the SmolLM2 config (config-choice.ts). */
const SMALL = 1e9;
/** The dataset an epoch is estimated for when none is built yet. */
export const NOMINAL_TOKENS = 1_000_000;
/** torch reports GiB. */
const GIB = 2 ** 30 / 1e9;

export type SpeedEstimate = {
  tokensPerSecond: number;
  /** What limits it: reading the weights once per token, the cores' arithmetic, or a GPU assumed. */
  bound: "memory" | "compute" | "gpu";
  basis: string;
};

const round1 = (value: number) => Math.round(value * 10) / 10;
const gb = (value: number) => `${round1(value)} GB`;
const size = (parameters: number) =>
  parameters >= 1e9 ? `${round1(parameters / 1e9)}B` : `${Math.round(parameters / 1e6)}M`;

/** The bytes of an entry's Q4_K_M weights, in GB: what each generated token reads. */
export function weightsGb(entry: Pick<CatalogueEntry, "shape">): number {
  return (entry.shape.parameters * Q4_K_M_BITS) / 8 / 1e9;
}

/**
 * Tokens a second one conversation would decode (pure). On a CPU, the lesser of two bounds: memory
 * (every weight is read once per token, at BANDWIDTH_EFFICIENCY of the measured bandwidth) and
 * arithmetic (2 FLOPs per parameter and token at CPU_DECODE_FLOPS_PER_CORE a core). On a GPU the
 * weights are read at an assumed bandwidth: node-llama-cpp reports no GPU's speed.
 */
export function estimateSpeed(
  model: { weightsGb: number; parameters: number },
  device: "cpu" | "gpu",
  facts: Pick<DoctorFacts, "cpu" | "bandwidth">,
): SpeedEstimate {
  if (device === "gpu") {
    return {
      tokensPerSecond: ASSUMED_GPU_GB_PER_SECOND / model.weightsGb,
      bound: "gpu",
      basis: `${gb(model.weightsGb)} of weights read per token at an assumed ${ASSUMED_GPU_GB_PER_SECOND} GB/s of GPU memory (not measured)`,
    };
  }
  const compute = (facts.cpu.cores * CPU_DECODE_FLOPS_PER_CORE) / (2 * model.parameters);
  const memory = facts.bandwidth
    ? (BANDWIDTH_EFFICIENCY * facts.bandwidth.gbPerSecond) / model.weightsGb
    : Number.POSITIVE_INFINITY;
  const cores = `${facts.cpu.cores} cores × ${CPU_DECODE_FLOPS_PER_CORE / 1e9} GFLOP/s at 2 FLOPs a parameter and token`;
  if (memory <= compute && facts.bandwidth) {
    return {
      tokensPerSecond: memory,
      bound: "memory",
      basis: `memory-bound: ${gb(model.weightsGb)} of weights read per token at ${BANDWIDTH_EFFICIENCY * 100}% of the measured ${round1(facts.bandwidth.gbPerSecond)} GB/s; the arithmetic (${cores}) would allow ${round1(compute)} tokens/s`,
    };
  }
  return {
    tokensPerSecond: compute,
    bound: "compute",
    basis: `arithmetic-bound: ${cores}; ${facts.bandwidth ? `the memory (${gb(model.weightsGb)} a token at ${BANDWIDTH_EFFICIENCY * 100}% of the measured ${round1(facts.bandwidth.gbPerSecond)} GB/s) would allow ${round1(memory)} tokens/s` : "memory bandwidth not measured"}`,
  };
}

/** Where the history's language stands (pure): Cyrillic, Latin, or unknown (nothing imported). */
export function historyScript(history: DoctorFacts["history"]): "cyrillic" | "latin" | "unknown" {
  const share = history?.cyrillicShare;
  if (share === null || share === undefined) return "unknown";
  return share >= CYRILLIC_HISTORY ? "cyrillic" : "latin";
}

export type EntryVerdict = {
  name: string;
  parameters: number;
  languages: string[];
  licence: string;
  /** Weights, KV cache for `contextTokens` and buffers (catalogue.ts `servingMemoryGb`). */
  memoryGb: number;
  /** Where it would run: the GPU when its free memory holds it, else the CPU when RAM does. */
  device: "gpu" | "cpu" | null;
  speed: SpeedEstimate | null;
  usable: boolean;
  /** It writes the history's language (Cyrillic history: it lists "ru"). */
  language: boolean;
  /** trainer/configs has a config for its size. */
  trainable: boolean;
  verdict: string;
};

export type ServeRecommendation = {
  entry: string | null;
  device: "gpu" | "cpu" | null;
  tokensPerSecond: number | null;
  memoryGb: number | null;
  basis: string;
  /** Why this one: the rule that picked it, in a sentence. */
  why: string;
  entries: EntryVerdict[];
};

type ServeFacts = Pick<DoctorFacts, "cpu" | "ram" | "bandwidth" | "servingGpu" | "history" | "contextTokens">;

/** Whether the serving GPU can be used at all: a GPU backend with memory. */
function servingGpuMemory(gpu: ServingGpu): number {
  return gpu.backend !== false && gpu.vramTotalGb > 0 ? gpu.vramFreeGb : 0;
}

/**
 * Judges every catalogue entry for this machine (pure): the memory it needs at the bot's context,
 * where it fits (the GPU's free memory, else RAM), the speed it would decode at there, whether it
 * writes the history's language and whether trainer/configs can train it.
 */
export function judgeEntries(facts: ServeFacts, catalogue: Catalogue): EntryVerdict[] {
  const script = historyScript(facts.history);
  const vram = servingGpuMemory(facts.servingGpu) * VRAM_SHARE;
  const ram = facts.ram.availableGb * RAM_SHARE;
  return catalogue.models
    .filter((entry) => entry.chatml_tokens)
    .map((entry) => {
      const memoryGb = servingMemoryGb(entry, facts.contextTokens);
      const device = memoryGb <= vram ? "gpu" : memoryGb <= ram ? "cpu" : null;
      const speed = device
        ? estimateSpeed({ weightsGb: weightsGb(entry), parameters: entry.shape.parameters }, device, facts)
        : null;
      const usable = (speed?.tokensPerSecond ?? 0) >= USABLE_TOKENS_PER_SECOND;
      const language = script !== "cyrillic" || entry.languages.includes("ru");
      const trainable = entry.shape.parameters <= LARGEST_WITH_CONFIG;
      const rate = speed
        ? `~${round1(speed.tokensPerSecond)} tokens/s on the ${device === "gpu" ? "GPU" : "CPU"}`
        : "";
      const verdict = !language
        ? `English only, and your history is Cyrillic (${entry.russian})`
        : !device
          ? `needs ${gb(memoryGb)}; ${vram > 0 ? `${gb(vram)} of free GPU memory and ` : ""}${gb(ram)} of RAM to spare`
          : !usable
            ? `too slow here (${rate})`
            : !trainable
              ? `serves (${rate}), but trainer/configs has no config for ${size(entry.shape.parameters)}`
              : `serves at ${rate}`;
      return {
        name: entry.name,
        parameters: entry.shape.parameters,
        languages: entry.languages,
        licence: entry.licence,
        memoryGb: round1(memoryGb),
        device,
        speed,
        usable,
        language,
        trainable,
        verdict,
      };
    });
}

/**
 * The entry to serve (pure): among those that fit, write the history's language and can be
 * trained, the largest that decodes at a usable speed (USABLE_TOKENS_PER_SECOND); when none is
 * that fast, the fastest of them. A Cyrillic history never gets an English-only entry.
 */
export function recommendServing(facts: ServeFacts, catalogue: Catalogue): ServeRecommendation {
  const entries = judgeEntries(facts, catalogue);
  const candidates = entries.filter((e) => e.device && e.language && e.trainable);
  const usable = candidates.filter((e) => e.usable).sort((a, b) => b.parameters - a.parameters);
  const fastest = [...candidates].sort(
    (a, b) => (b.speed?.tokensPerSecond ?? 0) - (a.speed?.tokensPerSecond ?? 0),
  );
  const script = historyScript(facts.history);
  const language =
    script === "cyrillic"
      ? `your messages are ${Math.round((facts.history?.cyrillicShare ?? 0) * 100)}% Cyrillic, so only entries that write Russian`
      : script === "latin"
        ? "your messages are mostly Latin script, so every entry's language fits"
        : "no history yet to tell its language";
  const chosen = usable[0] ?? fastest[0];
  if (!chosen) {
    return {
      entry: null,
      device: null,
      tokensPerSecond: null,
      memoryGb: null,
      basis: "",
      why: `no catalogue entry fits this machine (${language}): see each entry's verdict`,
      entries,
    };
  }
  for (const entry of entries) if (entry === chosen) entry.verdict = `recommended: ${entry.verdict}`;
  return {
    entry: chosen.name,
    device: chosen.device,
    tokensPerSecond: chosen.speed ? round1(chosen.speed.tokensPerSecond) : null,
    memoryGb: chosen.memoryGb,
    basis: chosen.speed?.basis ?? "",
    why: chosen.usable
      ? `the largest entry that fits, decodes at ≥ ${USABLE_TOKENS_PER_SECOND} tokens/s and can be trained with a config in trainer/configs; ${language}`
      : `no entry decodes at ≥ ${USABLE_TOKENS_PER_SECOND} tokens/s here, so the fastest that fits; ${language}`,
    entries,
  };
}

export type EpochEstimate = {
  seconds: number;
  low: number;
  high: number;
  steps: number;
  tokens: number;
  /** Where the tokens come from: the latest dataset, or NOMINAL_TOKENS. */
  tokensFrom: string;
  basis: string;
};

export type TrainRecommendation = {
  entry: string;
  method: "lora" | "qlora";
  /** The file in trainer/configs, or null when none is written for this size. */
  config: string | null;
  /** Where it trains: this machine's GPU, this CPU, or a rented GPU (this machine has none that fits). */
  where: "gpu" | "cpu" | "rented-gpu";
  /** The memory the method needs on one GPU (catalogue train_gb), when on a GPU. */
  needsGb: number | null;
  /** One epoch of the current dataset where it trains (a rented GPU: one like the config's). */
  epoch: EpochEstimate | null;
  /** When it does not train here: one epoch on this machine's CPU, for comparison. */
  cpuEpoch: EpochEstimate | null;
  note: string;
};

/** The keys a config lacks take the trainer's defaults for these (training/plan.ts's TrainerSettings). */
const DEFAULT_SETTINGS: TrainerSettings = {
  method: "lora",
  epochs: 1,
  maxSteps: 0,
  tokensPerBatch: 4096,
  batching: "packed",
  processes: 0,
  evalEvery: 0,
  maxEvalExamples: 0,
  saveEvery: 0,
  device: "auto",
  gpuMemoryGb: 0,
};

/**
 * One epoch of the dataset (or NOMINAL_TOKENS) with a config's row length and held-out passes, from
 * the model's size and the hardware: training/plan.ts's prior (estimateRun, priorPace), as `twin
 * train` estimates a run before any was timed.
 */
export function estimateEpoch(input: {
  parameters: number;
  settings: TrainerSettings | undefined;
  dataset: DoctorFacts["dataset"];
  hardware: { gpus: number; cpus: number };
}): EpochEstimate {
  const settings = { ...(input.settings ?? DEFAULT_SETTINGS), epochs: 1, maxSteps: 0 };
  const { dataset } = input;
  const perExample = dataset ? dataset.tokensEstimate / Math.max(1, dataset.examples) : 0;
  const trainTokens = dataset ? Math.round(perExample * dataset.trainExamples) : NOMINAL_TOKENS;
  const evalExamples = dataset
    ? Math.min(dataset.evalExamples, settings.maxEvalExamples || Number.POSITIVE_INFINITY)
    : 0;
  const pace = priorPace({
    parameters: input.parameters,
    tokensPerBatch: settings.tokensPerBatch,
    evalTokens: perExample * evalExamples,
    datasetTokens: dataset?.tokensEstimate ?? NOMINAL_TOKENS,
    hardware: input.hardware,
    method: settings.method,
  });
  const estimate = estimateRun({ trainTokens, settings, evalExamples, pace });
  const seconds = estimate.seconds ?? 0;
  return {
    seconds,
    low: estimate.low ?? seconds,
    high: estimate.high ?? seconds,
    steps: estimate.steps,
    tokens: trainTokens,
    tokensFrom: dataset
      ? `dataset ${dataset.id}'s ${trainTokens.toLocaleString("en-US")} training tokens`
      : `a nominal ${NOMINAL_TOKENS.toLocaleString("en-US")} tokens, no dataset yet`,
    basis: `\`twin train\`'s prior (training/plan.ts): ${estimate.steps.toLocaleString("en-US")} steps of ${settings.tokensPerBatch.toLocaleString("en-US")}-token rows, FLOPs from the model's size at ${input.hardware.gpus > 0 ? "its assumed rate for one GPU (not measured here)" : `its rate for ${input.hardware.cpus} CPU cores (calibrated on 2 Xeon cores)`}, with loading and ${evalExamples > 0 ? `${evalExamples.toLocaleString("en-US")} held-out examples` : "no held-out passes"}`,
  };
}

/**
 * How to train `entry` (pure): the SmolLM2 CPU config below 1B parameters; on the trainer's GPU,
 * LoRA where the catalogue's train_gb.lora fits its memory, else QLoRA where train_gb.qlora does;
 * otherwise a rented GPU with the 24 GB LoRA config, and how long an epoch would take on this CPU.
 */
export function recommendTraining(
  entry: CatalogueEntry,
  facts: Pick<DoctorFacts, "trainer" | "cpu" | "dataset" | "trainerConfigs">,
): TrainRecommendation {
  const parameters = entry.shape.parameters;
  const cpus = facts.trainer.available ? facts.trainer.cpus : facts.cpu.cores;
  const gpus = facts.trainer.available ? facts.trainer.gpus : [];
  const gpu = [...gpus].sort((a, b) => b.memoryGb - a.memoryGb)[0];
  const gpuGb = gpu ? gpu.memoryGb * GIB : 0;
  const epochOn = (config: string | null, hardware: { gpus: number; cpus: number }) =>
    estimateEpoch({
      parameters,
      settings: config ? facts.trainerConfigs[config] : undefined,
      dataset: facts.dataset,
      hardware,
    });
  const configured = parameters <= LARGEST_WITH_CONFIG;
  if (parameters < SMALL) {
    const config = TRAIN_CONFIGS.smallLora;
    return {
      entry: entry.name,
      method: "lora",
      config,
      where: "cpu",
      needsGb: null,
      epoch: epochOn(config, { gpus: 0, cpus }),
      cpuEpoch: null,
      note: `a ${size(parameters)} base trains on the CPU with ${config}`,
    };
  }
  const card = gpu ? `${gpu.name}, ${gb(gpuGb)}` : "";
  if (gpu && configured && gpuGb >= entry.train_gb.lora) {
    return {
      entry: entry.name,
      method: "lora",
      config: TRAIN_CONFIGS.lora24,
      where: "gpu",
      needsGb: entry.train_gb.lora,
      epoch: epochOn(TRAIN_CONFIGS.lora24, { gpus: 1, cpus }),
      cpuEpoch: null,
      note: `LoRA fits the trainer's GPU (${card}; it needs ~${gb(entry.train_gb.lora)})`,
    };
  }
  if (gpu && configured && gpuGb >= entry.train_gb.qlora) {
    const missing = facts.trainer.available && facts.trainer.bitsandbytes === false;
    return {
      entry: entry.name,
      method: "qlora",
      config: TRAIN_CONFIGS.qlora16,
      where: "gpu",
      needsGb: entry.train_gb.qlora,
      epoch: epochOn(TRAIN_CONFIGS.qlora16, { gpus: 1, cpus }),
      cpuEpoch: null,
      note: `LoRA needs ~${gb(entry.train_gb.lora)}, more than the GPU's ${gb(gpuGb)}; QLoRA (4-bit base, ~${gb(entry.train_gb.qlora)}) fits${missing ? " once bitsandbytes is installed in the trainer's environment" : ""}`,
    };
  }
  const config = configured ? TRAIN_CONFIGS.lora24 : null;
  const why = gpu
    ? `the trainer's GPU (${card}) is too small for a LoRA of ${entry.name} (~${gb(entry.train_gb.lora)}; QLoRA ~${gb(entry.train_gb.qlora)})`
    : facts.trainer.available
      ? "PyTorch sees no GPU here"
      : "the trainer's environment is missing, and without a GPU";
  return {
    entry: entry.name,
    method: "lora",
    config,
    where: "rented-gpu",
    needsGb: entry.train_gb.lora,
    epoch: epochOn(config, { gpus: 1, cpus }),
    cpuEpoch: epochOn(config, { gpus: 0, cpus }),
    note: `${why}: train on a rented GPU with ≥ ${Math.ceil(entry.train_gb.lora)} GB${config ? ` (${config})` : ` (write a config from ${TRAIN_CONFIGS.lora24})`}; a worker there needs only DATABASE_URL`,
  };
}

/** "~3 days", "~5 h", "~20 min" (pure): for estimates too rough for minutes. */
export function roughDuration(seconds: number): string {
  if (seconds >= 2 * 86_400) return `~${Math.round(seconds / 86_400)} days`;
  if (seconds >= 2 * 3600) return `~${Math.round(seconds / 3600)} h`;
  if (seconds >= 120) return `~${Math.round(seconds / 60)} min`;
  return `~${Math.max(1, Math.round(seconds))} s`;
}

export type DoctorReport = {
  cpu: DoctorFacts["cpu"];
  ram: DoctorFacts["ram"];
  disk: DoctorFacts["disk"];
  memoryBandwidth: DoctorFacts["bandwidth"];
  gpus: { serving: ServingGpu; training: TrainerFacts };
  history: { ownerMessages: number; cyrillicShare: number | null; script: "cyrillic" | "latin" | "unknown" };
  dataset: DoctorFacts["dataset"];
  /** The model served now: where it runs, its measured speed and the estimate for its size. */
  served: (ServedFacts & { estimate: SpeedEstimate | null }) | null;
  recommendation: { serve: ServeRecommendation; train: TrainRecommendation | null };
  missing: string[];
};

/** The whole report (pure): the facts, the recommendations and what is missing. */
export function doctorReport(facts: DoctorFacts, catalogue: Catalogue): DoctorReport {
  const serve = recommendServing(facts, catalogue);
  const entry = catalogue.models.find((m) => m.name === serve.entry);
  const train = entry ? recommendTraining(entry, facts) : null;
  const served = facts.served ? { ...facts.served, estimate: servedEstimate(facts.served, facts) } : null;
  return {
    cpu: facts.cpu,
    ram: facts.ram,
    disk: facts.disk,
    memoryBandwidth: facts.bandwidth,
    gpus: { serving: facts.servingGpu, training: facts.trainer },
    history: {
      ownerMessages: facts.history?.ownerMessages ?? 0,
      cyrillicShare: facts.history?.cyrillicShare ?? null,
      script: historyScript(facts.history),
    },
    dataset: facts.dataset,
    served,
    recommendation: { serve, train },
    missing: missingParts(facts, catalogue, serve, train),
  };
}

function servedEstimate(served: ServedFacts, facts: DoctorFacts): SpeedEstimate | null {
  if (served.sizeGb === null || served.parameters === null) return null;
  const device = served.placement && served.placement.gpuLayers > 0 ? "gpu" : "cpu";
  return estimateSpeed({ weightsGb: served.sizeGb, parameters: served.parameters }, device, facts);
}

/** What this machine lacks for the recommendations, each with what to do (pure). */
export function missingParts(
  facts: DoctorFacts,
  catalogue: Catalogue,
  serve: ServeRecommendation,
  train: TrainRecommendation | null,
): string[] {
  const missing: string[] = [];
  if (facts.servingGpu.error) missing.push(facts.servingGpu.error);
  if (!facts.trainer.available) missing.push(facts.trainer.reason);
  if (!serve.entry) missing.push(serve.why);
  if (historyScript(facts.history) === "unknown")
    missing.push(
      "no history of yours yet (`twin import`): its language decides which entries fit, so English-only ones are not ruled out",
    );
  if (!facts.dataset)
    missing.push(
      `no dataset yet (\`twin dataset\`): the epoch times are for a nominal ${NOMINAL_TOKENS.toLocaleString("en-US")} tokens`,
    );
  if (train?.where === "rented-gpu") {
    const seven = catalogue.models.find((m) => m.name === "qwen2.5-7b");
    const gpu = facts.trainer.available && facts.trainer.gpus.length > 0;
    // The 7B is the reference's size: how long its LoRA would take here says why a GPU is needed.
    const sevenOnCpu = seven
      ? recommendTraining(seven, { ...facts, trainer: { available: false, python: undefined, reason: "" } })
          .cpuEpoch
      : null;
    const onCpu = [
      train.cpuEpoch
        ? `a LoRA of ${train.entry} on this CPU would take ${roughDuration(train.cpuEpoch.seconds)} an epoch`
        : "",
      sevenOnCpu && seven && seven.name !== train.entry
        ? `a 7B LoRA ${roughDuration(sevenOnCpu.seconds)}`
        : "",
    ]
      .filter(Boolean)
      .join(", ");
    missing.push(
      `${gpu ? "no GPU large enough for training" : "no GPU"}: ${onCpu}, for ${train.cpuEpoch?.tokensFrom ?? "the dataset"}; train on a rented GPU with ≥ ${Math.ceil(train.needsGb ?? 0)} GB (${train.config ?? "a config written for it"})`,
    );
  }
  const served = facts.served;
  if (!served && serve.entry) {
    missing.push(`no model registered: \`twin model pull ${serve.entry}\``);
  } else if (served?.error) {
    missing.push(`the served model ${served.name} did not load: ${served.error}`);
  }
  if (serve.entry && facts.disk) {
    const entry = catalogue.models.find((m) => m.name === serve.entry);
    const need = entry ? weightsGb(entry) * 1.05 : 0;
    if (need > facts.disk.freeGb && served?.name !== serve.entry)
      missing.push(
        `${gb(facts.disk.freeGb)} free in ${facts.disk.path}: ${serve.entry}'s Q4_K_M needs ~${gb(need)}`,
      );
  }
  if (facts.servingGpu.backend === false && !facts.servingGpu.error) {
    const seven = serve.entries.find((e) => e.name === "qwen2.5-7b");
    if (seven?.speed && !seven.usable)
      missing.push(
        `no GPU for serving: a 7B decodes at ~${round1(seven.speed.tokensPerSecond)} tokens/s on this CPU; a GPU with ≥ ${Math.ceil(seven.memoryGb)} GB serves it at a human pace (TWIN_GPU, docs/operations.md)`,
      );
  }
  return missing;
}
