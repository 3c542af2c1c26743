import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  check,
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
import { baseModels } from "../models/models.tables.ts";

export const RUN_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** What the trainer is asked to use: a config file from trainer/configs and `key=value` overrides. */
export type RunConfig = { file: string; set: Record<string, string> };

/**
 * How long a run should take, as shown when it was confirmed (plan.ts `estimateRun`): its steps,
 * the point estimate in seconds from the queue to the stored result, the range shown around it,
 * and the parts it adds up (seconds each, and how many), which the run's ETA starts from and
 * replaces with measured ones as steps and evaluations run (progress.ts). Runs queued before the
 * parts were kept have `steps` and `seconds` alone.
 */
export type RunEstimate = {
  steps: number;
  seconds: number | null;
  low?: number;
  high?: number;
  parts?: EstimateParts;
};

export type EstimateParts = {
  /** "measured": the latest run on this base and config; "rough": the prior from the model's size. */
  source: "measured" | "rough";
  /** Once a run: the worker starting, the model loading, the dataset read and tokenized. */
  setup: number;
  /** One optimizer step over a row of `tokensPerBatch` tokens. */
  step: number;
  /** One forward pass over the `evalExamples` held-out examples. */
  evalPass: number;
  /** Saving and storing one checkpoint. */
  checkpoint: number;
  /** After the last evaluation: the GGUF written and stored, the chart drawn. */
  finish: number;
  tokensPerBatch: number;
  evalExamples: number;
  evalEvery: number;
  saveEvery: number;
  /** Passes before the first step (full fine-tuning measures the base first) and after the last. */
  firstEvalPasses: number;
  finalEvalPasses: number;
};

/**
 * The training queue. A run is a row: the bot or `twin train` inserts it (queued), a worker claims
 * it with FOR UPDATE SKIP LOCKED (running) and beats `heartbeat_at` while it trains, so a worker
 * that died is visible as a stale heartbeat and its run can be re-queued (it resumes from the
 * checkpoint stored in training_files). Cancelling sets `cancel_requested_at`; the worker turns it
 * into the trainer's STOP file.
 */
export const trainingRuns = pgTable(
  "training_runs",
  {
    id: serial("id").primaryKey(),
    status: text("status", { enum: RUN_STATUSES }).notNull().default("queued"),
    datasetId: integer("dataset_id")
      .notNull()
      .references(() => datasets.id),
    baseModelId: integer("base_model_id")
      .notNull()
      .references(() => baseModels.id),
    method: text("method").notNull().default("lora"),
    config: jsonb("config").$type<RunConfig>().notNull(),
    /** The estimate shown when the run was confirmed (RunEstimate: no column of its own, no migration). */
    estimate: jsonb("estimate").$type<RunEstimate>(),
    /** Where the bot follows the run (the owner's chat); null for runs from the CLI. */
    chatId: bigint("chat_id", { mode: "number" }),
    /**
     * Which worker may claim it: `local` (this machine's), `remote:<host>` (`twin worker remote`) or
     * `any`. A run that needs a GPU (QLoRA, a CUDA device, a GPU memory budget) is never claimed by a
     * worker without one.
     */
    target: text("target").notNull().default("any"),
    needsGpu: boolean("needs_gpu").notNull().default(false),
    worker: text("worker"),
    attempts: integer("attempts").notNull().default(0),
    step: integer("step").notNull().default(0),
    maxSteps: integer("max_steps"),
    metrics: jsonb("metrics").$type<Record<string, unknown>>(),
    error: text("error"),
    cancelRequestedAt: timestamp("cancel_requested_at", { withTimezone: true }),
    heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp("started_at", { withTimezone: true }),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
  },
  (t) => [index("training_runs_status").on(t.status, t.id)],
);

/**
 * The trainer's progress lines (phase, start, log, eval, checkpoint, done, stopped, failed), as it
 * wrote them, the queue's own (queued, claimed, requeued, succeeded, …), and the run's output: each
 * line it printed that is not an event (library warnings, tracebacks) is a `log_line` event
 * ({ line }), stored by the worker itself (trainer/twin_trainer/output.py), so a worker anywhere
 * keeps it; `twin train log <run>` prints it.
 */
export const trainingEvents = pgTable(
  "training_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    runId: integer("run_id")
      .notNull()
      .references(() => trainingRuns.id, { onDelete: "cascade" }),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
    event: text("event").notNull(),
    data: jsonb("data").$type<Record<string, unknown>>().notNull(),
  },
  (t) => [index("training_events_run").on(t.runId, t.id)],
);

export const FILE_KINDS = ["checkpoint", "adapter_gguf", "chart_png", "chart_svg"] as const;

/**
 * Files a run produced, stored in the database in chunks so a worker anywhere needs only
 * DATABASE_URL: checkpoints (a tar of the adapter, optimizer, scheduler, RNG and step), the GGUF
 * adapter, the loss chart. Only the latest checkpoint of a run is kept.
 */
export const trainingFiles = pgTable(
  "training_files",
  {
    id: serial("id").primaryKey(),
    runId: integer("run_id")
      .notNull()
      .references(() => trainingRuns.id, { onDelete: "cascade" }),
    kind: text("kind", { enum: FILE_KINDS }).notNull(),
    step: integer("step"),
    bytes: bigint("bytes", { mode: "number" }).notNull(),
    sha256: text("sha256").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("training_files_run").on(t.runId, t.kind)],
);

export const trainingFileChunks = pgTable(
  "training_file_chunks",
  {
    fileId: integer("file_id")
      .notNull()
      .references(() => trainingFiles.id, { onDelete: "cascade" }),
    ordinal: integer("ordinal").notNull(),
    data: bytea("data").notNull(),
  },
  (t) => [primaryKey({ columns: [t.fileId, t.ordinal] })],
);

export const TUNED_KINDS = ["lora", "full"] as const;
export type TunedKind = (typeof TUNED_KINDS)[number];

/**
 * Tuned models, one per succeeded run: a LoRA adapter (its GGUF in the database, megabytes) or a
 * fully fine-tuned model (its GGUF in the model store the worker and the bot share, gigabytes —
 * only its path, size and checksum here). At most one is active: new conversations use it; none
 * active means the base model alone.
 */
export const adapters = pgTable(
  "adapters",
  {
    id: serial("id").primaryKey(),
    runId: integer("run_id")
      .notNull()
      .unique()
      .references(() => trainingRuns.id),
    baseModelId: integer("base_model_id")
      .notNull()
      .references(() => baseModels.id),
    kind: text("kind", { enum: TUNED_KINDS }).notNull().default("lora"),
    fileId: integer("file_id").references(() => trainingFiles.id),
    /** A full model's GGUF, relative to the model store (TWIN_MODEL_STORE). */
    storePath: text("store_path"),
    sha256: text("sha256"),
    bytes: bigint("bytes", { mode: "number" }),
    name: text("name").notNull(),
    metrics: jsonb("metrics").$type<Record<string, unknown>>(),
    active: boolean("active").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("adapters_one_active").on(t.active).where(sql`${t.active}`),
    check(
      "adapters_kind_has_its_file",
      sql`(${t.kind} = 'lora' AND ${t.fileId} IS NOT NULL) OR (${t.kind} = 'full' AND ${t.storePath} IS NOT NULL AND ${t.sha256} IS NOT NULL AND ${t.bytes} IS NOT NULL)`,
    ),
  ],
);

/** Workers that announced themselves: their hardware, and a heartbeat while they live. */
export const trainingWorkers = pgTable("training_workers", {
  id: text("id").primaryKey(),
  host: text("host").notNull(),
  pid: integer("pid").notNull(),
  hardware: jsonb("hardware").$type<Record<string, unknown>>().notNull(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
  heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }).notNull().defaultNow(),
  stoppedAt: timestamp("stopped_at", { withTimezone: true }),
});
