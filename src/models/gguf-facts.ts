import { createHash } from "node:crypto";
import fs, { type FileHandle } from "node:fs/promises";
import type { GgufTensorInfo, readGgufFileInfo } from "node-llama-cpp";
import { GgufFactsError } from "./models.errors.ts";

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

const SPLIT_PART = /-(\d{5})-of-(\d{5})\.gguf$/;

/**
 * The files of one GGUF: the file itself, or every part of a split one (llama.cpp's gguf-split
 * names them `…-00001-of-00003.gguf`), first to last, whichever part is named (pure).
 */
export function ggufParts(file: string): string[] {
  const match = SPLIT_PART.exec(file);
  const count = Number(match?.[2]);
  if (!match || !(count > 0) || Number(match[1]) > count) return [file];
  const stem = file.slice(0, match.index);
  return Array.from(
    { length: count },
    (_, i) => `${stem}-${String(i + 1).padStart(5, "0")}-of-${match[2]}.gguf`,
  );
}

/**
 * sha256 over the tensors, sorted by name: `name:dims:type;` and the first 64 bytes of the data.
 * The same recipe as the trainer's `base_fingerprint` (trainer/twin_trainer/gguf_export.py), so an
 * adapter names the exact base it was trained on — which shapes alone cannot (base vs instruct).
 * A split GGUF's tensors are read from the part that holds each (`filePart`), so the parts together
 * have the fingerprint of the same model written as one file.
 */
export async function fingerprint(path: string, tensors: readonly GgufTensorInfo[]): Promise<string> {
  const digest = createHash("sha256");
  const sorted = [...tensors].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const parts = ggufParts(path);
  const files = new Map<number, FileHandle>();
  try {
    const head = Buffer.alloc(64);
    for (const tensor of sorted) {
      digest.update(`${tensor.name}:${tensor.dimensions.map(String).join("x")}:${tensor.ggmlType};`);
      const part = parts.length > 1 ? (tensor.filePart ?? 1) : 1;
      let file = files.get(part);
      if (!file) {
        file = await fs.open(parts[part - 1] ?? path, "r");
        files.set(part, file);
      }
      const { bytesRead } = await file.read(head, 0, 64, Number(tensor.fileOffset));
      digest.update(head.subarray(0, bytesRead));
    }
  } finally {
    for (const file of files.values()) await file.close();
  }
  return digest.digest("hex");
}

/** What a GGUF file is: a model (with its fingerprint) or a LoRA adapter (with its base's). */
export async function readGgufFacts(path: string): Promise<ModelFacts | AdapterFacts> {
  let info: Awaited<ReturnType<typeof readGgufFileInfo>>;
  try {
    // Loaded here, not at the top: a command that reads no model (an import) starts without the engine.
    const { readGgufFileInfo } = await import("node-llama-cpp");
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
  // A split GGUF: the metadata is the first part's, the tensors are every part's.
  const tensors = info.fullTensorInfo ?? info.tensorInfo ?? [];
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
