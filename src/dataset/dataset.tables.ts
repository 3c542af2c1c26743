import {
  bigint,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
} from "drizzle-orm/pg-core";
import type { Segment } from "./chatml.ts";

export const datasets = pgTable("datasets", {
  id: serial("id").primaryKey(),
  status: text("status", { enum: ["building", "ready", "failed"] }).notNull(),
  formatVersion: integer("format_version").notNull(),
  /** The resolved settings, so any dataset can be rebuilt exactly. */
  settings: jsonb("settings").$type<Record<string, unknown>>().notNull(),
  manifest: jsonb("manifest").$type<Record<string, unknown>>(),
  error: text("error"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  /** Beaten while it builds: a building dataset whose heartbeat is stale has lost its process. */
  heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp("finished_at", { withTimezone: true }),
});

export const datasetExamples = pgTable(
  "dataset_examples",
  {
    datasetId: integer("dataset_id")
      .notNull()
      .references(() => datasets.id, { onDelete: "cascade" }),
    ordinal: integer("ordinal").notNull(),
    exampleId: text("example_id").notNull(),
    chatId: bigint("chat_id", { mode: "number" }).notNull(),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull(),
    split: text("split", { enum: ["train", "eval"] }).notNull(),
    speakers: jsonb("speakers").$type<{ id: number; name: string }[]>().notNull(),
    segments: jsonb("segments").$type<Segment[]>().notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.datasetId, t.ordinal] }),
    index("dataset_examples_split").on(t.datasetId, t.split),
  ],
);
