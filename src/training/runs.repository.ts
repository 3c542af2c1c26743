import { createHash } from "node:crypto";
import { and, asc, desc, eq, gt, inArray, isNull, ne, or, sql } from "drizzle-orm";
import type { Database, Db } from "../db/client.ts";
import { createModelsRepository } from "../models/models.repository.ts";
import { plural } from "../plural.ts";
import { StoredFileError } from "./training.errors.ts";
import {
  adapters,
  type RunConfig,
  type RunEstimate,
  type RunStatus,
  trainingEvents,
  trainingFileChunks,
  trainingFiles,
  trainingRuns,
  trainingWorkers,
} from "./training.tables.ts";

export type TrainingRun = typeof trainingRuns.$inferSelect;
export type TrainingEvent = typeof trainingEvents.$inferSelect;
/** An event with the time it was stored, as an estimate times a finished run (plan.ts `timeRun`). */
export type TimedEvent = Pick<TrainingEvent, "event" | "data" | "at">;
export type Adapter = typeof adapters.$inferSelect & { baseName: string };
export type FileKind = (typeof trainingFiles.$inferSelect)["kind"];

export const FINISHED: RunStatus[] = ["succeeded", "failed", "cancelled"];

/** A line the run printed that is not an event (stored by its worker; `twin train log`). */
export const LOG_LINE = "log_line";
/** The queue's events shown among the log lines: where each attempt begins and how the run ended. */
const LOG_FRAME = ["claimed", "requeued", "failed", "cancelled", "succeeded"];

/** The training queue as the bot and the CLI see it (the worker's side is trainer/twin_trainer/run_queue.py). */
export function createRunsRepository({ db }: Pick<Database, "db">) {
  const models = createModelsRepository({ db });
  /** Adapters with their base model's name, from the models module (it owns base_models). */
  const withBaseNames = async (rows: (typeof adapters.$inferSelect)[]): Promise<Adapter[]> => {
    if (rows.length === 0) return [];
    const names = new Map((await models.list()).map((model) => [model.id, model.name]));
    return rows.map((row) => ({
      ...row,
      baseName: names.get(row.baseModelId) ?? `model ${row.baseModelId}`,
    }));
  };
  const event = (runId: number, name: string, data: Record<string, unknown> = {}) =>
    db.insert(trainingEvents).values({ runId, event: name, data });

  return {
    async queue(input: {
      datasetId: number;
      baseModelId: number;
      config: RunConfig;
      method: string;
      estimate: RunEstimate;
      target: string;
      needsGpu: boolean;
      chatId?: number | undefined;
    }): Promise<TrainingRun> {
      const [run] = await db
        .insert(trainingRuns)
        .values({ ...input, chatId: input.chatId ?? null })
        .returning();
      await event((run as TrainingRun).id, "queued", { estimate: input.estimate, target: input.target });
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

    /**
     * Progress events after `afterId`, in order; the run's output lines are `log`'s. They are left
     * out here because the worker writes them on a connection of its own: a line committed before
     * an event whose id is smaller would move a follower's `afterId` past that event.
     */
    events(runId: number, afterId = 0): Promise<TrainingEvent[]> {
      return db
        .select()
        .from(trainingEvents)
        .where(
          and(
            eq(trainingEvents.runId, runId),
            gt(trainingEvents.id, afterId),
            ne(trainingEvents.event, LOG_LINE),
          ),
        )
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

    /**
     * A queued run no worker can train as asked (a remote machine too small for it, full fine-tuning
     * sent to a remote): failed with the reason, before any worker claims it.
     */
    async refuse(id: number, reason: string): Promise<boolean> {
      const rows = await db
        .update(trainingRuns)
        .set({ status: "failed", error: reason, finishedAt: sql`now()` })
        .where(and(eq(trainingRuns.id, id), eq(trainingRuns.status, "queued")))
        .returning({ id: trainingRuns.id });
      if (rows.length > 0) await event(id, "failed", { reason });
      return rows.length > 0;
    },

    /**
     * Is there work this worker should pick up: a queued run meant for it (its target or `any`; one
     * that needs a GPU only when it has one), or a running one whose worker went silent?
     */
    async hasWork(
      staleSeconds: number,
      worker: { target: string; hasGpu: boolean } = { target: "local", hasGpu: false },
    ): Promise<boolean> {
      const rows = await db
        .select({ id: trainingRuns.id })
        .from(trainingRuns)
        .where(
          or(
            and(
              eq(trainingRuns.status, "queued"),
              inArray(trainingRuns.target, ["any", worker.target]),
              worker.hasGpu ? undefined : eq(trainingRuns.needsGpu, false),
            ),
            and(
              eq(trainingRuns.status, "running"),
              sql`${trainingRuns.heartbeatAt} < now() - make_interval(secs => ${staleSeconds})`,
            ),
          ),
        )
        .limit(1);
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

    /**
     * The latest succeeded run on this base and config, with its estimate and its events (log lines
     * left out): where its time went is the next estimate's pace (plan.ts `measuredPace`).
     */
    async lastTimedRun(
      baseModelId: number,
      configFile: string,
    ): Promise<{ estimate: RunEstimate | null; events: TimedEvent[] } | undefined> {
      const [run] = await db
        .select({ id: trainingRuns.id, estimate: trainingRuns.estimate })
        .from(trainingRuns)
        .where(
          and(
            eq(trainingRuns.status, "succeeded"),
            eq(trainingRuns.baseModelId, baseModelId),
            sql`${trainingRuns.config}->>'file' = ${configFile}`,
          ),
        )
        .orderBy(desc(trainingRuns.id))
        .limit(1);
      if (!run) return undefined;
      const events = await db
        .select({ event: trainingEvents.event, data: trainingEvents.data, at: trainingEvents.at })
        .from(trainingEvents)
        .where(and(eq(trainingEvents.runId, run.id), ne(trainingEvents.event, LOG_LINE)))
        .orderBy(asc(trainingEvents.id));
      return { estimate: run.estimate, events };
    },

    /**
     * What `twin train log` prints: the run's output lines (`log_line` events, stored by its worker)
     * with the queue's events that frame them (each attempt's claim, requeues, the end).
     */
    log(runId: number): Promise<TrainingEvent[]> {
      return db
        .select()
        .from(trainingEvents)
        .where(and(eq(trainingEvents.runId, runId), inArray(trainingEvents.event, [LOG_LINE, ...LOG_FRAME])))
        .orderBy(asc(trainingEvents.id));
    },

    /** The last `count` output lines of a run's latest attempt, oldest first (a failure's context). */
    async logTail(runId: number, count: number): Promise<string[]> {
      const rows = await db
        .select({ event: trainingEvents.event, data: trainingEvents.data })
        .from(trainingEvents)
        .where(
          and(
            eq(trainingEvents.runId, runId),
            gt(
              trainingEvents.id,
              sql`coalesce((SELECT max(id) FROM training_events WHERE run_id = ${runId} AND event = 'claimed'), 0)`,
            ),
            eq(trainingEvents.event, LOG_LINE),
          ),
        )
        .orderBy(desc(trainingEvents.id))
        .limit(count);
      return rows.reverse().map((row) => String(row.data.line ?? ""));
    },

    /** The newest stored file of a kind for a run, checked against its sha256. */
    async file(runId: number, kind: FileKind): Promise<Buffer | undefined> {
      const [file] = await db
        .select({ id: trainingFiles.id })
        .from(trainingFiles)
        .where(and(eq(trainingFiles.runId, runId), eq(trainingFiles.kind, kind)))
        .orderBy(desc(trainingFiles.id))
        .limit(1);
      return file ? readFile(db, file.id) : undefined;
    },

    readFile: (fileId: number) => readFile(db, fileId),

    async listAdapters(): Promise<Adapter[]> {
      return withBaseNames(await db.select().from(adapters).orderBy(asc(adapters.id)));
    },

    async activeAdapter(): Promise<Adapter | undefined> {
      const [row] = await withBaseNames(await db.select().from(adapters).where(eq(adapters.active, true)));
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

async function readFile(db: Db, fileId: number): Promise<Buffer> {
  const files = await db
    .select({ bytes: trainingFiles.bytes, sha256: trainingFiles.sha256 })
    .from(trainingFiles)
    .where(eq(trainingFiles.id, fileId));
  const rows = await db
    .select({ data: trainingFileChunks.data })
    .from(trainingFileChunks)
    .where(eq(trainingFileChunks.fileId, fileId))
    .orderBy(asc(trainingFileChunks.ordinal));
  const data = Buffer.concat(rows.map((row) => row.data));
  const expected = files[0];
  if (!expected || data.length !== Number(expected.bytes)) {
    throw new StoredFileError(`stored file ${fileId} is incomplete (${plural(data.length, "byte")})`);
  }
  if (createHash("sha256").update(data).digest("hex") !== expected.sha256) {
    throw new StoredFileError(
      `stored file ${fileId} is damaged: its sha256 differs from what the worker wrote`,
    );
  }
  return data;
}

export type RunsRepository = ReturnType<typeof createRunsRepository>;
