import { plural } from "../plural.ts";
import { TrainPlanError } from "./training.errors.ts";

/** A GPU as a worker reports it (`python -m twin_trainer worker`: memory in GiB). */
export type WorkerGpu = { name?: string; memory_gb?: number };

export type ConfigChoice = {
  method: "lora" | "full";
  /** TWIN_TRAIN_CONFIG (or TWIN_TRAIN_CONFIG_FULL for full), or `twin train --config`: used as it is. */
  configured: string | undefined;
  /** The base to train: its name, and its parameters when its GGUF could be read. */
  base: { name: string; parameters: number | undefined };
  /** The GPUs of the worker that will train; empty when it has none, or none is running yet. */
  gpus: WorkerGpu[];
};

/** The configs in trainer/configs this choice picks from, by what they are written for. */
export const TRAIN_CONFIGS = {
  smallLora: "smollm2-135m-lora-cpu.yaml",
  smallFull: "smollm2-135m-full-cpu.yaml",
  lora24: "qwen2.5-7b-lora-1x24gb.yaml",
  qlora16: "qwen2.5-7b-qlora-1x16gb.yaml",
  full1x80: "qwen2.5-3b-full-1x80gb.yaml",
  full8x80: "qwen2.5-7b-full-8x80gb.yaml",
} as const;

/** Below this many parameters a base trains on a CPU in reasonable time (the SmolLM2 configs). */
const SMALL = 1e9;
/** Qwen2.5-7B has 7.6 billion; the 7B configs fit bases up to about this size. */
const SEVEN_B = 9e9;
/** Qwen2.5-3B has 3.1 billion: full fine-tuning of up to about this many fits one 80 GB card. */
const THREE_B = 4e9;

/** "7.6B", "135M": a base's size from its GGUF, or from its name ("…-7b-…", "…135M…") when unread. */
export function parametersFromName(name: string): number | undefined {
  const match = /(?:^|[^a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])/i.exec(name);
  if (!match) return undefined;
  return Number(match[1]) * ((match[2] as string).toLowerCase() === "b" ? 1e9 : 1e6);
}

function size(parameters: number): string {
  return parameters >= 1e9 ? `${(parameters / 1e9).toFixed(1)}B` : `${Math.round(parameters / 1e6)}M`;
}

/**
 * The trainer config a new run uses (pure): the configured one when set; otherwise the one written
 * for the base's size and the worker's GPUs — the SmolLM2 CPU configs for a base under 1B
 * parameters, the 7B GPU configs for a base up to ~9B on a worker with a GPU large enough. Anything
 * else is refused with a message that names the variable to set and the config that would fit, so
 * a 7B is never trained with a 135M model's CPU config.
 */
export function chooseTrainConfig(choice: ConfigChoice): string {
  if (choice.configured) return choice.configured;
  const variable = choice.method === "full" ? "TWIN_TRAIN_CONFIG_FULL" : "TWIN_TRAIN_CONFIG";
  const parameters = choice.base.parameters ?? parametersFromName(choice.base.name);
  if (parameters === undefined) {
    throw new TrainPlanError(
      `cannot tell the size of the base ${choice.base.name} (its GGUF is unreadable and its name says none): set ${variable} to the trainer config written for it (trainer/configs: ${TRAIN_CONFIGS.smallLora} for a model under 1B parameters, ${TRAIN_CONFIGS.lora24} for a 7B on a 24 GB GPU)`,
    );
  }
  if (parameters < SMALL) return choice.method === "full" ? TRAIN_CONFIGS.smallFull : TRAIN_CONFIGS.smallLora;
  const memory = Math.max(0, ...choice.gpus.map((gpu) => gpu.memory_gb ?? 0));
  // A card reports a little less than its nominal size (a 24 GB card: ~23.6 GiB).
  const fits = (nominal: number) => memory >= nominal * 0.9;
  const base = `the base ${choice.base.name} (${size(parameters)} parameters)`;
  const gpus =
    choice.gpus.length === 0
      ? "no running worker reports a GPU"
      : `the worker has ${plural(choice.gpus.length, "GPU")} of ${memory} GB`;
  if (choice.method === "full") {
    if (parameters <= THREE_B && fits(80)) return TRAIN_CONFIGS.full1x80;
    if (
      parameters <= SEVEN_B &&
      choice.gpus.length >= 8 &&
      choice.gpus.every((gpu) => (gpu.memory_gb ?? 0) >= 72)
    )
      return TRAIN_CONFIGS.full8x80;
    const wanted =
      parameters <= THREE_B
        ? `${TRAIN_CONFIGS.full1x80} (one 80 GB GPU)`
        : `${TRAIN_CONFIGS.full8x80} (eight 80 GB GPUs)`;
    throw new TrainPlanError(
      `full fine-tuning of ${base} needs ${wanted}, and ${gpus}: set ${variable} to a config in trainer/configs written for this worker, or train a LoRA`,
    );
  }
  if (parameters > SEVEN_B) {
    throw new TrainPlanError(
      `trainer/configs has no config for ${base}: write one for it (start from ${TRAIN_CONFIGS.lora24}) and set ${variable} to its file name`,
    );
  }
  if (fits(24)) return TRAIN_CONFIGS.lora24;
  throw new TrainPlanError(
    `${base} trains on a GPU with ${TRAIN_CONFIGS.lora24} (24 GB, or ${TRAIN_CONFIGS.qlora16} on 16 GB with bitsandbytes installed), and ${gpus}: start a worker on a GPU machine (docker compose --profile gpu up -d) or set ${variable} to the config to use`,
  );
}
