import { pipeline } from "node:stream/promises";
import { desc, eq, inArray, sql } from "drizzle-orm";
import { from as copyFrom } from "pg-copy-streams";
import type { Database } from "../db/client.ts";
import { startHeartbeat } from "../db/heartbeat.ts";
import { copyText } from "../history/copy-format.ts";
import type { ForgetDependents } from "../history/forget.ts";
import { FORMAT_VERSION } from "./chatml.ts";
import { datasetExamples, datasets } from "./dataset.tables.ts";
import type { Example } from "./examples.ts";
import type { Manifest } from "./manifest.ts";

export function createDatasetRepository({ db, pool }: Pick<Database, "db" | "pool">) {
  async function create(settings: Record<string, unknown>): Promise<number> {
    const [row] = await db
      .insert(datasets)
      .values({ status: "building", formatVersion: FORMAT_VERSION, settings })
      .returning({ id: datasets.id });
    return (row as { id: number }).id;
  }

  /**
   * Examples go in by COPY, in the order they were built. One COPY runs while the caller builds the
   * next chat's examples: `write` waits only for the one before; `flush` for the last.
   */
  async function openExampleSink(datasetId: number) {
    let ordinal = 0;
    let inFlight: Promise<void> = Promise.resolve();
    const copy = async (data: string) => {
      const client = await pool.connect();
      try {
        await pipeline(
          (async function* () {
            yield data;
          })(),
          client.query(
            copyFrom(
              "COPY dataset_examples (dataset_id, ordinal, example_id, chat_id, started_at, split, speakers, segments) FROM STDIN",
            ),
          ),
        );
      } finally {
        client.release();
      }
    };
    return {
      async write(examples: Example[]) {
        if (examples.length === 0) return;
        let data = "";
        for (const e of examples) {
          data += `${datasetId}\t${ordinal++}\t${copyText(e.id)}\t${e.chat_id}\t${e.started_at}\t${e.split}\t${copyText(
            JSON.stringify(e.speakers),
          )}\t${copyText(JSON.stringify(e.segments))}\n`;
        }
        await inFlight;
        inFlight = copy(data);
        inFlight.catch(() => undefined); // reported by the next write or flush
      },
      /** Waits for the last COPY; its error, if any, is thrown here. */
      async flush() {
        await inFlight;
      },
      async abort() {
        await inFlight.catch(() => undefined);
        await db
          .delete(datasetExamples)
          .where(eq(datasetExamples.datasetId, datasetId))
          .catch(() => undefined);
      },
    };
  }

  async function finish(datasetId: number, manifest: Record<string, unknown>): Promise<void> {
    await db
      .update(datasets)
      .set({ status: "ready", manifest, finishedAt: new Date() })
      .where(eq(datasets.id, datasetId));
  }

  async function fail(datasetId: number, error: string): Promise<void> {
    await db
      .update(datasets)
      .set({ status: "failed", error, finishedAt: new Date() })
      .where(eq(datasets.id, datasetId));
  }

  /**
   * Builds whose process is gone (building, heartbeat older than `staleSeconds`) are marked failed,
   * and the examples they had written are removed. Returns their ids.
   */
  async function failAbandonedBuilds(staleSeconds: number): Promise<number[]> {
    return db.transaction(async (transaction) => {
      const { rows } = await transaction.execute<{ id: number }>(
        sql`UPDATE datasets SET status = 'failed', finished_at = now(),
              error = 'its process stopped (no heartbeat for ' || ${staleSeconds} || ' s); build it again'
            WHERE status = 'building' AND heartbeat_at < now() - make_interval(secs => ${staleSeconds})
            RETURNING id`,
      );
      const ids = rows.map((row) => row.id);
      if (ids.length > 0)
        await transaction.delete(datasetExamples).where(inArray(datasetExamples.datasetId, ids));
      return ids;
    });
  }

  async function latestReady() {
    const [row] = await db
      .select()
      .from(datasets)
      .where(eq(datasets.status, "ready"))
      .orderBy(desc(datasets.id))
      .limit(1);
    return row;
  }

  /**
   * The dataset a run or an evaluation uses: `id` when given, else the latest ready one; with its
   * manifest, or undefined when it is not ready (the caller says what to do).
   */
  async function readyDataset(id?: number | undefined) {
    const [row] = id ? await db.select().from(datasets).where(eq(datasets.id, id)) : [await latestReady()];
    return row?.status === "ready" && row.manifest
      ? { ...row, manifest: row.manifest as Manifest }
      : undefined;
  }

  async function examples(datasetId: number): Promise<Example[]> {
    const rows = await db
      .select()
      .from(datasetExamples)
      .where(eq(datasetExamples.datasetId, datasetId))
      .orderBy(datasetExamples.ordinal);
    return rows.map((row) => ({
      id: row.exampleId,
      chat_id: row.chatId,
      started_at: row.startedAt.toISOString(),
      split: row.split,
      speakers: row.speakers,
      segments: row.segments,
    }));
  }

  return {
    create,
    /** Beats the build's heartbeat until stopped (see db/heartbeat.ts). */
    keepBuildAlive: (id: number, staleSeconds: number) => startHeartbeat(db, "datasets", id, staleSeconds),
    failAbandonedBuilds,
    openExampleSink,
    finish,
    fail,
    latestReady,
    readyDataset,
    examples,
  };
}

/** The dataset's part of a forget (history/forget.ts): examples carry the forgotten text. */
export const datasetForgetting: ForgetDependents = {
  async forgetChat(transaction, chatId) {
    await transaction.delete(datasetExamples).where(eq(datasetExamples.chatId, chatId));
  },
  async forgetAll(transaction) {
    await transaction.delete(datasets); // examples cascade
  },
};
