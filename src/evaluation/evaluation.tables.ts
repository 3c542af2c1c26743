import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { datasets } from "../dataset/dataset.tables.ts";
import { bytea } from "../db/columns.ts";

/** One model the evaluation generates with: the base alone, the base with real history, or an adapter. */
export type EvaluatedModel = { key: string; label: string; adapterId: number | null; history: boolean };

/**
 * `twin eval`: every held-out turn of one speaker, generated from its real preceding context by
 * each model, beside the real turn (evaluation_samples); the report (Markdown, with its PNG plots
 * in evaluation_files) and the figures it holds (summary).
 */
export const evaluations = pgTable("evaluations", {
  id: serial("id").primaryKey(),
  datasetId: integer("dataset_id")
    .notNull()
    .references(() => datasets.id),
  speaker: text("speaker").notNull(),
  models: jsonb("models").$type<EvaluatedModel[]>().notNull(),
  settings: jsonb("settings").$type<Record<string, unknown>>().notNull(),
  status: text("status", { enum: ["generating", "reporting", "ready", "failed"] }).notNull(),
  report: text("report"),
  summary: jsonb("summary").$type<Record<string, unknown>>(),
  error: text("error"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp("finished_at", { withTimezone: true }),
});

export const evaluationSamples = pgTable(
  "evaluation_samples",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    evaluationId: integer("evaluation_id")
      .notNull()
      .references(() => evaluations.id, { onDelete: "cascade" }),
    model: text("model").notNull(),
    exampleId: text("example_id").notNull(),
    chatId: bigint("chat_id", { mode: "number" }).notNull(),
    turnIndex: integer("turn_index").notNull(),
    /** The real preceding turns of the session (what every model was prompted with). */
    context: jsonb("context").$type<{ speaker: string; messages: string[] }[]>().notNull(),
    real: jsonb("real").$type<string[]>().notNull(),
    generated: jsonb("generated").$type<string[]>().notNull(),
    seed: integer("seed").notNull(),
    /** A leakage probe (prompted to complete the canary's opening), not a held-out turn. */
    probe: boolean("probe").notNull().default(false),
  },
  (t) => [
    uniqueIndex("evaluation_samples_point").on(t.evaluationId, t.model, t.exampleId, t.turnIndex, t.probe),
  ],
);

export const evaluationFiles = pgTable(
  "evaluation_files",
  {
    evaluationId: integer("evaluation_id")
      .notNull()
      .references(() => evaluations.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    data: bytea("data").notNull(),
  },
  (t) => [primaryKey({ columns: [t.evaluationId, t.name] })],
);

/**
 * "Which one is real?": a friend saw the real reply and the twin's for a held-out turn of their own
 * chat with the owner, in random order, and picked one.
 */
export const guessVotes = pgTable(
  "guess_votes",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    sampleId: bigint("sample_id", { mode: "number" })
      .notNull()
      .references(() => evaluationSamples.id, { onDelete: "cascade" }),
    personId: bigint("person_id", { mode: "number" }).notNull(),
    /** Where the real reply was shown: 0 first, 1 second. */
    realPosition: integer("real_position").notNull(),
    /** The friend took the twin's reply for the real one. */
    fooled: boolean("fooled"),
    votedAt: timestamp("voted_at", { withTimezone: true }),
    shownAt: timestamp("shown_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("guess_votes_person").on(t.personId),
    uniqueIndex("guess_votes_once").on(t.sampleId, t.personId),
  ],
);
