import { randomBytes } from "node:crypto";

/**
 * Small GGUF files written from TypeScript, for tests that need a model file of a given size or a
 * split model but not one llama.cpp can run: the GGUF v3 layout (header, metadata, tensor infos,
 * 32-byte aligned data), f32 tensors of random bytes. A split follows llama.cpp's gguf-split: every
 * part is a GGUF of its own holding some of the tensors and `split.no`/`split.count`/
 * `split.tensors.count`; the first part alone carries the model's metadata.
 */

export type FakeTensor = { name: string; dims: number[]; data: Buffer };

type Entry = [key: string, type: "string" | "u16" | "u32" | "i32", value: string | number];

const ALIGNMENT = 32;
const TYPE = { u16: 2, u32: 4, i32: 5, string: 8 } as const;
const GGML_F32 = 0;

/** f32 tensors of random content, `floats` values each, named like a llama model's. */
export function randomTensors(floats: number[]): FakeTensor[] {
  return floats.map((count, i) => ({
    name: `blk.${i}.ffn_up.weight`,
    dims: [count],
    data: randomBytes(count * 4),
  }));
}

/** A whole model: `general.architecture` llama with one block, and the tensors. */
export function fakeModel(tensors: FakeTensor[], name = "fake"): Buffer {
  return gguf(modelMetadata(name), tensors);
}

/** The same model as `fakeModel`, split into `parts` files (tensors dealt out in order). */
export function fakeSplitModel(tensors: FakeTensor[], parts: number, name = "fake"): Buffer[] {
  const per = Math.ceil(tensors.length / parts);
  return Array.from({ length: parts }, (_, i) => {
    const split: Entry[] = [
      ["split.no", "u16", i],
      ["split.count", "u16", parts],
      ["split.tensors.count", "i32", tensors.length],
    ];
    return gguf(i === 0 ? [...modelMetadata(name), ...split] : split, tensors.slice(i * per, (i + 1) * per));
  });
}

function modelMetadata(name: string): Entry[] {
  return [
    ["general.architecture", "string", "llama"],
    ["general.name", "string", name],
    ["llama.block_count", "u32", 1],
  ];
}

function gguf(metadata: Entry[], tensors: FakeTensor[]): Buffer {
  const head: Buffer[] = [Buffer.from("GGUF"), u32(3), u64(tensors.length), u64(metadata.length)];
  for (const [key, type, value] of metadata) {
    head.push(str(key), u32(TYPE[type]));
    if (type === "string") head.push(str(String(value)));
    else head.push(number(type, Number(value)));
  }
  let offset = 0;
  const data: Buffer[] = [];
  for (const tensor of tensors) {
    head.push(str(tensor.name), u32(tensor.dims.length), ...tensor.dims.map(u64), u32(GGML_F32), u64(offset));
    data.push(tensor.data, Buffer.alloc(pad(tensor.data.length)));
    offset += tensor.data.length + pad(tensor.data.length);
  }
  const header = Buffer.concat(head);
  return Buffer.concat([header, Buffer.alloc(pad(header.length)), ...data]);
}

function pad(length: number): number {
  return (ALIGNMENT - (length % ALIGNMENT)) % ALIGNMENT;
}

function number(type: "u16" | "u32" | "i32", value: number): Buffer {
  const buffer = Buffer.alloc(type === "u16" ? 2 : 4);
  if (type === "u16") buffer.writeUInt16LE(value);
  else if (type === "u32") buffer.writeUInt32LE(value);
  else buffer.writeInt32LE(value);
  return buffer;
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

function u64(value: number): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(BigInt(value));
  return buffer;
}

function str(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  return Buffer.concat([u64(bytes.length), bytes]);
}
