import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import { type GgufTensorInfo, readGgufFileInfo } from "node-llama-cpp";

/** The key under which the trainer records the base's fingerprint in an adapter GGUF. */
export const BASE_FINGERPRINT_KEY = "twin.base.fingerprint";

export type TensorShapes = Map<string, number[]>;

export type ModelFacts = {
  kind: "model";
  path: string;
  architecture: string;
  layers: number;
  fingerprint: string;
  /** A fully fine-tuned model's base, as the trainer records it; undefined for a base model. */
  tunedFrom: string | undefined;
  shapes: TensorShapes;
};

export type AdapterFacts = {
  kind: "adapter";
  path: string;
  architecture: string;
  /** The fingerprint of the base it was trained on, when the trainer recorded it. */
  baseFingerprint: string | undefined;
  baseLayers: number | undefined;
  alpha: number | undefined;
  shapes: TensorShapes;
};

export class GgufFactsError extends Error {}

type Metadata = Record<string, unknown>;

function lookup(metadata: Metadata, key: string): unknown {
  let value: unknown = metadata;
  for (const part of key.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Metadata)[part];
  }
  return value;
}

function shapesOf(tensors: readonly GgufTensorInfo[]): TensorShapes {
  return new Map(tensors.map((t) => [t.name, t.dimensions.map(Number)]));
}

/**
 * sha256 over the tensors, sorted by name: `name:dims:type;` and the first 64 bytes of the data.
 * The same recipe as the trainer's `base_fingerprint` (trainer/twin_trainer/gguf_export.py), so an
 * adapter names the exact base it was trained on — which shapes alone cannot (base vs instruct).
 */
export async function fingerprint(path: string, tensors: readonly GgufTensorInfo[]): Promise<string> {
  const digest = createHash("sha256");
  const sorted = [...tensors].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const file = await fs.open(path, "r");
  try {
    const head = Buffer.alloc(64);
    for (const tensor of sorted) {
      digest.update(`${tensor.name}:${tensor.dimensions.map(String).join("x")}:${tensor.ggmlType};`);
      const { bytesRead } = await file.read(head, 0, 64, Number(tensor.fileOffset));
      digest.update(head.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  return digest.digest("hex");
}

/** What a GGUF file is: a model (with its fingerprint) or a LoRA adapter (with its base's). */
export async function readGgufFacts(path: string): Promise<ModelFacts | AdapterFacts> {
  let info: Awaited<ReturnType<typeof readGgufFileInfo>>;
  try {
    info = await readGgufFileInfo(path, {
      sourceType: "filesystem",
      logWarnings: false,
      ignoreKeys: ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"],
    });
  } catch (error) {
    throw new GgufFactsError(`${path}: not a readable GGUF file (${(error as Error).message})`);
  }
  const metadata = info.metadata as unknown as Metadata;
  const architecture = String(lookup(metadata, "general.architecture") ?? "");
  if (!architecture) throw new GgufFactsError(`${path}: no general.architecture in its metadata`);
  const tensors = info.tensorInfo ?? [];
  if (lookup(metadata, "general.type") === "adapter") {
    if (lookup(metadata, "adapter.type") !== "lora") {
      throw new GgufFactsError(`${path}: an adapter, but not a LoRA (adapter.type)`);
    }
    const alpha = lookup(metadata, "adapter.lora.alpha");
    const baseLayers = lookup(metadata, "twin.base.block_count");
    const base = lookup(metadata, BASE_FINGERPRINT_KEY);
    return {
      kind: "adapter",
      path,
      architecture,
      baseFingerprint: typeof base === "string" ? base : undefined,
      baseLayers: baseLayers === undefined ? undefined : Number(baseLayers),
      alpha: alpha === undefined ? undefined : Number(alpha),
      shapes: shapesOf(tensors),
    };
  }
  const layers = Number(lookup(metadata, `${architecture}.block_count`));
  const tunedFrom = lookup(metadata, BASE_FINGERPRINT_KEY);
  return {
    kind: "model",
    path,
    architecture,
    layers,
    fingerprint: await fingerprint(path, tensors),
    tunedFrom: typeof tunedFrom === "string" ? tunedFrom : undefined,
    shapes: shapesOf(tensors),
  };
}
