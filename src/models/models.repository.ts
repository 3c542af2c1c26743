import fs from "node:fs/promises";
import path from "node:path";
import { asc, eq, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { ggufParts, readGgufFacts } from "./gguf-facts.ts";
import { ModelRegistryError } from "./models.errors.ts";
import { baseModels } from "./models.tables.ts";

export type BaseModel = typeof baseModels.$inferSelect;

export function createModelsRepository({ db }: Pick<Database, "db">) {
  return {
    /** Registers a base GGUF (reading its facts and fingerprint); the first one becomes the default. */
    async add(input: {
      ggufPath: string;
      hfSource?: string | undefined;
      /** What a pull fetched and checked against the GGUF: the weights' commit and fingerprint. */
      pairedWeights?: { revision: string | undefined; fingerprint: string } | undefined;
      name?: string | undefined;
      makeDefault?: boolean;
    }) {
      const ggufPath = path.resolve(input.ggufPath);
      const stat = await fs.stat(ggufPath).catch(() => undefined);
      if (!stat?.isFile()) throw new ModelRegistryError(`${ggufPath}: no such file`);
      const facts = await readGgufFacts(ggufPath);
      if (facts.kind !== "model") {
        throw new ModelRegistryError(`${ggufPath} is a LoRA adapter; register its base model instead`);
      }
      const name = input.name ?? path.basename(ggufPath, ".gguf");
      // A split GGUF weighs all its parts (readGgufFacts has read every one).
      const parts = ggufParts(ggufPath);
      const bytes = parts.length === 1 ? stat.size : await totalSize(parts);
      return db.transaction(async (tx) => {
        const [{ count } = { count: 0 }] = await tx
          .select({ count: sql<number>`count(*)::int` })
          .from(baseModels);
        const makeDefault = input.makeDefault || count === 0;
        if (makeDefault) await tx.update(baseModels).set({ isDefault: false });
        const values = {
          name,
          ggufPath,
          hfSource: input.hfSource ?? null,
          hfRevision: input.pairedWeights?.revision ?? null,
          weightsFingerprint: input.pairedWeights?.fingerprint ?? null,
          architecture: facts.architecture,
          layers: facts.layers,
          fingerprint: facts.fingerprint,
          sizeMb: Math.round(bytes / 2 ** 20),
          isDefault: makeDefault,
        };
        const [row] = await tx
          .insert(baseModels)
          .values(values)
          .onConflictDoUpdate({ target: baseModels.name, set: values })
          .returning();
        return row as BaseModel;
      });
    },
    list(): Promise<BaseModel[]> {
      return db.select().from(baseModels).orderBy(asc(baseModels.id));
    },
    async byName(name: string): Promise<BaseModel | undefined> {
      const [row] = await db.select().from(baseModels).where(eq(baseModels.name, name));
      return row;
    },
    async defaultModel(): Promise<BaseModel | undefined> {
      const [row] = await db.select().from(baseModels).where(eq(baseModels.isDefault, true));
      return row;
    },
  };
}

async function totalSize(files: string[]): Promise<number> {
  const stats = await Promise.all(files.map((file) => fs.stat(file)));
  return stats.reduce((sum, stat) => sum + stat.size, 0);
}
