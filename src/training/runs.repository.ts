import { createHash } from "node:crypto";
import { and, asc, desc, eq, getTableColumns, gt, inArray, isNull, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { baseModels } from "../models/models.tables.ts";
import {
  adapters,
  type RunConfig,
  type RunStatus,
  trainingEvents,
  trainingFiles,
  trainingRuns,
  trainingWorkers,
} from "./training.tables.ts";

export type TrainingRun = typeof trainingRuns.$inferSelect;
export type TrainingEvent = typeof trainingEvents.$inferSelect;
export type Adapter = typeof adapters.$inferSelect & { baseName: string };
export type FileKind = (typeof trainingFiles.$inferSelect)["kind"];

export const FINISHED: RunStatus[] = ["succeeded", "failed", "cancelled"];

export class StoredFileError extends Error {}

/** The training queue as the bot and the CLI see it (the worker's side is trainer/twin_trainer/run_queue.py). */
export function createRunsRepository({ db, pool }: Pick<Database, "db" | "pool">) {
  const event = (runId: number, name: string, data: Record<string, unknown> = {}) =>
    db.insert(trainingEvents).values({ runId, event: name, data });

  return {
    async queue(input: {
      datasetId: number;
      baseModelId: number;
      config: RunConfig;
      method: string;
      estimate: { steps: number; seconds: number | null };
      chatId?: number | undefined;
    }): Promise<TrainingRun> {
      const [run] = await db
        .insert(trainingRuns)
        .values({ ...input, chatId: input.chatId ?? null })
        .returning();
      await event((run as TrainingRun).id, "queued", { estimate: input.estimate });
      return run as TrainingRun;
    },

    async get(id: number): Promise<TrainingRun | undefined> {
      const [run] = await db.select().from(trainingRuns).where(eq(trainingRuns.id, id));
      return run;
    },

    list(limit = 20): Promise<TrainingRun[]> {
      return db.select().from(trainingRuns).orderBy(desc(trainingRuns.id)).limit(limit);
    },

    /** Queued and running runs, oldest first. */
    unfinished(): Promise<TrainingRun[]> {
      return db
        .select()
        .from(trainingRuns)
        .where(inArray(trainingRuns.status, ["queued", "running"]))
        .orderBy(asc(trainingRuns.id));
    },

    /** Events after `afterId`, in order. */
    events(runId: number, afterId = 0): Promise<TrainingEvent[]> {
      return db
        .select()
        .from(trainingEvents)
        .where(and(eq(trainingEvents.runId, runId), gt(trainingEvents.id, afterId)))
        .orderBy(asc(trainingEvents.id));
    },

    /**
     * Cancels: a queued run at once, a running one by asking its worker (it stops at the next
     * step with a checkpoint). Returns the run's status afterwards; undefined if it had finished.
     */
    async requestCancel(id: number): Promise<RunStatus | undefined> {
      return db.transaction(async (tx) => {
        const [run] = await tx
          .update(trainingRuns)
          .set({
            cancelRequestedAt: sql`now()`,
            status: sql`CASE WHEN ${trainingRuns.status} = 'queued' THEN 'cancelled' ELSE ${trainingRuns.status} END`,
            finishedAt: sql`CASE WHEN ${trainingRuns.status} = 'queued' THEN now() END`,
          })
          .where(and(eq(trainingRuns.id, id), inArray(trainingRuns.status, ["queued", "running"])))
          .returning({ status: trainingRuns.status });
        if (run) await tx.insert(trainingEvents).values({ runId: id, event: "cancel_requested", data: {} });
        return run?.status;
      });
    },

    /** Puts a failed or cancelled run back in the queue; it resumes from its stored checkpoint. */
    async requeue(id: number): Promise<boolean> {
      const rows = await db
        .update(trainingRuns)
        .set({ status: "queued", cancelRequestedAt: null, error: null, finishedAt: null, worker: null })
        .where(and(eq(trainingRuns.id, id), inArray(trainingRuns.status, ["failed", "cancelled"])))
        .returning({ id: trainingRuns.id });
      if (rows.length > 0) await event(id, "requeued", { reason: "asked by the owner" });
      return rows.length > 0;
    },

    /**
     * A worker process that had to be killed (it did not stop in time) leaves its run marked running:
     * back to the queue at once, to resume from its last stored checkpoint. `worker` is the id's
     * "host:pid" start, as the trainer's worker ids begin.
     */
    async requeueRunsOf(worker: string): Promise<number[]> {
      const rows = await db
        .update(trainingRuns)
        .set({ status: "queued", worker: null, heartbeatAt: null })
        .where(and(eq(trainingRuns.status, "running"), sql`${trainingRuns.worker} LIKE ${`${worker}:%`}`))
        .returning({ id: trainingRuns.id });
      for (const { id } of rows) await event(id, "requeued", { reason: `worker ${worker} was stopped` });
      return rows.map((row) => row.id);
    },

    /** Is there work a worker should pick up: a queued run, or a running one whose worker went silent? */
    async hasWork(staleSeconds: number): Promise<boolean> {
      const { rows } = await pool.query(
        `SELECT 1 FROM training_runs WHERE status = 'queued'
           OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)) LIMIT 1`,
        [staleSeconds],
      );
      return rows.length > 0;
    },

    /** Workers that beat their heartbeat recently, with their hardware. */
    liveWorkers(staleSeconds: number) {
      return db
        .select()
        .from(trainingWorkers)
        .where(
          and(
            isNull(trainingWorkers.stoppedAt),
            sql`${trainingWorkers.heartbeatAt} > now() - make_interval(secs => ${staleSeconds})`,
          ),
        );
    },

    /** Seconds per step of the latest finished run on this base and config (for estimates). */
    async secondsPerStep(baseModelId: number, configFile: string): Promise<number | undefined> {
      const { rows } = await pool.query(
        `SELECT (max((e.data->>'time')::float8) - min((e.data->>'time')::float8)) / nullif(count(*) - 1, 0) AS seconds
           FROM training_events e
          WHERE e.event = 'log' AND e.run_id = (
            SELECT id FROM training_runs WHERE status = 'succeeded' AND base_model_id = $1
               AND config->>'file' = $2 ORDER BY id DESC LIMIT 1)`,
        [baseModelId, configFile],
      );
      const seconds = rows[0]?.seconds;
      return seconds ? Number(seconds) : undefined;
    },

    /** The newest stored file of a kind for a run, checked against its sha256. */
    async file(runId: number, kind: FileKind): Promise<Buffer | undefined> {
      const [file] = await db
        .select({ id: trainingFiles.id })
        .from(trainingFiles)
        .where(and(eq(trainingFiles.runId, runId), eq(trainingFiles.kind, kind)))
        .orderBy(desc(trainingFiles.id))
        .limit(1);
      return file ? readFile(pool, file.id) : undefined;
    },

    readFile: (fileId: number) => readFile(pool, fileId),

    listAdapters(): Promise<Adapter[]> {
      return db
        .select({ ...getTableColumns(adapters), baseName: baseModels.name })
        .from(adapters)
        .innerJoin(baseModels, eq(baseModels.id, adapters.baseModelId))
        .orderBy(asc(adapters.id));
    },

    async activeAdapter(): Promise<Adapter | undefined> {
      const [row] = await db
        .select({ ...getTableColumns(adapters), baseName: baseModels.name })
        .from(adapters)
        .innerJoin(baseModels, eq(baseModels.id, adapters.baseModelId))
        .where(eq(adapters.active, true));
      return row;
    },

    /** Makes one adapter active (null: the base model alone). */
    async activate(adapterId: number | null): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.update(adapters).set({ active: false }).where(eq(adapters.active, true));
        if (adapterId !== null) {
          const rows = await tx
            .update(adapters)
            .set({ active: true })
            .where(eq(adapters.id, adapterId))
            .returning({ id: adapters.id });
          if (rows.length === 0) throw new StoredFileError(`no adapter ${adapterId}`);
        }
      });
    },
  };
}

async function readFile(pool: Database["pool"], fileId: number): Promise<Buffer> {
  const { rows: files } = await pool.query("SELECT bytes, sha256 FROM training_files WHERE id = $1", [
    fileId,
  ]);
  const { rows } = await pool.query(
    "SELECT data FROM training_file_chunks WHERE file_id = $1 ORDER BY ordinal",
    [fileId],
  );
  const data = Buffer.concat(rows.map((row) => row.data as Buffer));
  const expected = files[0];
  if (!expected || data.length !== Number(expected.bytes)) {
    throw new StoredFileError(`stored file ${fileId} is incomplete (${data.length} bytes)`);
  }
  if (createHash("sha256").update(data).digest("hex") !== expected.sha256) {
    throw new StoredFileError(
      `stored file ${fileId} is damaged: its sha256 differs from what the worker wrote`,
    );
  }
  return data;
}

export type RunsRepository = ReturnType<typeof createRunsRepository>;
