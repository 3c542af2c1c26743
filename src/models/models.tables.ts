import { boolean, integer, pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Base models registered with `twin model add`: the GGUF that is served and the HF weights the
 * trainer uses (the same model), with the fingerprint adapters are checked against.
 */
export const baseModels = pgTable("base_models", {
  id: serial("id").primaryKey(),
  name: text("name").notNull().unique(),
  ggufPath: text("gguf_path").notNull(),
  /** HF folder or hub id of the same weights, for training; null: train from the GGUF itself. */
  hfSource: text("hf_source"),
  /** The hub commit of hfSource that `twin model pull` fetched and checked (a worker fetches that one). */
  hfRevision: text("hf_revision"),
  /** Those weights' fingerprint (trainer/twin_trainer/weights.py), checked by a worker that has no GGUF. */
  weightsFingerprint: text("weights_fingerprint"),
  architecture: text("architecture").notNull(),
  layers: integer("layers").notNull(),
  fingerprint: text("fingerprint").notNull(),
  sizeMb: integer("size_mb").notNull(),
  isDefault: boolean("is_default").notNull().default(false),
  addedAt: timestamp("added_at", { withTimezone: true }).notNull().defaultNow(),
});
