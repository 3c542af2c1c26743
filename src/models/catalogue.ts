import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { z } from "zod";
import { CatalogueError } from "./models.errors.ts";

/**
 * The catalogue of base models (catalogue.yaml): what `twin model pull <name>` fetches, what
 * `twin doctor` recommends, and what each needs to serve and to train. Read and checked here;
 * nothing is fetched.
 */

export const CATALOGUE_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), "catalogue.yaml");

const hubRepo = z.string().regex(/^[\w.-]+\/[\w.-]+$/, "expected <org>/<repo>");
const gigabytes = z.number().positive().max(1000);

const shape = z.strictObject({
  parameters: z.number().int().positive(),
  layers: z.number().int().positive(),
  hidden: z.number().int().positive(),
  heads: z.number().int().positive(),
  kv_heads: z.number().int().positive(),
  intermediate: z.number().int().positive(),
  vocabulary: z.number().int().positive(),
});

const entry = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9.-]*$/, "lower-case letters, digits, dots and dashes"),
  gguf: hubRepo,
  quants: z.array(z.string().regex(/^[A-Z0-9_]+$/, "a quantization tag such as Q4_K_M")).min(1),
  weights: hubRepo,
  languages: z.array(z.string().regex(/^[a-z]{2}$/, "a two-letter language code")).min(1),
  russian: z.string().min(1),
  licence: z.string().min(1),
  chatml_tokens: z.boolean(),
  shape,
  serve_gb: gigabytes,
  train_gb: z.strictObject({ lora: gigabytes, qlora: gigabytes }),
});

const catalogue = z.strictObject({
  context: z.number().int().positive(),
  models: z.array(entry).min(1),
});

export type CatalogueEntry = z.infer<typeof entry>;
export type Catalogue = z.infer<typeof catalogue>;

/** Bits per weight of a Q4_K_M file, on average over a model's tensors. */
export const Q4_K_M_BITS = 4.9;
/** Buffers llama.cpp allocates beside the weights and the KV cache. */
const BUFFERS_GB = 0.3;

/** Reads and checks the catalogue; a wrong field is named with its entry. */
export function loadCatalogue(file = CATALOGUE_PATH): Catalogue {
  const parsed = catalogue.safeParse(parse(fs.readFileSync(file, "utf8")));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new CatalogueError(`${file}: ${problems.join("; ")}`);
  }
  const names = new Set<string>();
  for (const model of parsed.data.models) {
    if (names.has(model.name)) throw new CatalogueError(`${file}: ${model.name} is listed twice`);
    names.add(model.name);
  }
  return parsed.data;
}

/** The memory serving an entry's Q4_K_M needs at `context` tokens, in GB (as serve_gb states it). */
export function servingMemoryGb(model: Pick<CatalogueEntry, "shape">, context: number): number {
  const { parameters, layers, hidden, heads, kv_heads } = model.shape;
  const weights = (parameters * Q4_K_M_BITS) / 8;
  const kvCache = 2 * layers * kv_heads * (hidden / heads) * context * 2; // keys and values, f16
  return (weights + kvCache) / 1e9 + BUFFERS_GB;
}

/** The entry called `name`, refused with its reason when it cannot carry the training format. */
export function catalogueEntry(name: string, from: Catalogue = loadCatalogue()): CatalogueEntry {
  const model = from.models.find((m) => m.name === name);
  if (!model) {
    throw new CatalogueError(
      `${name} is not in the catalogue; it has ${from.models.map((m) => m.name).join(", ")} (or pull hf:<org>/<repo>/<file>.gguf)`,
    );
  }
  if (!model.chatml_tokens) {
    throw new CatalogueError(
      `${name}: <|im_start|> and <|im_end|> are not single tokens of its vocabulary, so it cannot carry twin's training format`,
    );
  }
  return model;
}
