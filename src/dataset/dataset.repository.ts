import { pipeline } from "node:stream/promises";
import { desc, eq } from "drizzle-orm";
import { from as copyFrom } from "pg-copy-streams";
import type { Database } from "../db/client.ts";
import { startHeartbeat } from "../db/heartbeat.ts";
import { copyText } from "../history/copy-format.ts";
import type { MessageKind } from "../history/history.tables.ts";
import { FORMAT_VERSION } from "./chatml.ts";
import { datasetExamples, datasets } from "./dataset.tables.ts";
import type { ChatInfo, Example } from "./examples.ts";
import type { DatasetMessage } from "./sessions.ts";

const FETCH = 20_000;

/** The message columns sessions are built from, and a row of them as the dataset reads it. */
export const datasetMessageColumns =
  "chat_id, message_id, sender_id, (extract(epoch FROM sent_at) * 1000)::float8 AS sent_at, kind, text, emoji";

export type DatasetMessageRow = {
  chat_id: string;
  message_id: string;
  sender_id: string | null;
  sent_at: number;
  kind: MessageKind;
  text: string;
  emoji: string | null;
};

export function datasetMessageFromRow(row: DatasetMessageRow): DatasetMessage {
  return {
    chatId: Number(row.chat_id),
    messageId: Number(row.message_id),
    senderId: row.sender_id === null ? null : Number(row.sender_id),
    sentAt: row.sent_at,
    kind: row.kind,
    text: row.text,
    emoji: row.emoji,
  };
}

export function createDatasetRepository({ db, pool }: Pick<Database, "db" | "pool">) {
  /**
   * 24 months (by default) before the owner's last message, as an ISO date; null when they never
   * wrote. A message dated in the future (a wrong clock, an edited export) does not move it.
   */
  async function defaultSince(ownerId: number, months: number): Promise<string | null> {
    const { rows } = await pool.query<{ since: Date | null }>(
      `SELECT max(sent_at) - make_interval(months => $2) AS since FROM messages
       WHERE sender_id = $1 AND sent_at <= now() + interval '1 day'`,
      [ownerId, months],
    );
    return rows[0]?.since ? rows[0].since.toISOString() : null;
  }

  async function chatsToInclude(filter: { types: string[]; exclude: number[] }): Promise<ChatInfo[]> {
    const { rows } = await pool.query<{ id: string; type: string; title: string | null }>(
      "SELECT id, type, title FROM chats WHERE type = ANY($1) AND NOT (id = ANY($2::bigint[])) ORDER BY id",
      [filter.types, filter.exclude],
    );
    return rows.map((row) => ({ id: Number(row.id), type: row.type, title: row.title }));
  }

  /** People known to be bots: the other side of every bot chat. */
  async function botIds(): Promise<number[]> {
    const { rows } = await pool.query<{ id: string }>("SELECT id FROM chats WHERE type = 'bot_chat'");
    return rows.map((row) => Number(row.id));
  }

  /** Everyone who wrote, with their latest name and how much they wrote (for name precedence). */
  async function people(): Promise<{ id: number; name: string | null; messages: number }[]> {
    const { rows } = await pool.query<{ id: string; name: string | null; messages: number }>(
      `SELECT p.id, p.name, coalesce(m.n, 0)::int AS messages
       FROM people p LEFT JOIN (SELECT sender_id, count(*) AS n FROM messages GROUP BY sender_id) m ON m.sender_id = p.id`,
    );
    return rows.map((row) => ({ id: Number(row.id), name: row.name, messages: row.messages }));
  }

  /**
   * Calls `each` with every chat's messages in time order, one chat at a time, read through a
   * server-side cursor so memory holds one chat.
   */
  async function forEachChatMessages(
    chatIds: number[],
    since: string | null,
    each: (chatId: number, messages: DatasetMessage[]) => Promise<void>,
  ): Promise<void> {
    const client = await pool.connect();
    try {
      await client.query("BEGIN READ ONLY");
      await client.query(
        `DECLARE dataset_messages NO SCROLL CURSOR FOR
         SELECT ${datasetMessageColumns}
         FROM messages WHERE chat_id = ANY($1::bigint[]) AND ($2::timestamptz IS NULL OR sent_at >= $2)
           AND kind <> 'service'
         ORDER BY chat_id, sent_at, message_id`,
        [chatIds, since],
      );
      let chatId: number | undefined;
      let messages: DatasetMessage[] = [];
      for (;;) {
        const { rows } = await client.query<DatasetMessageRow>(`FETCH ${FETCH} FROM dataset_messages`);
        for (const row of rows) {
          const message = datasetMessageFromRow(row);
          if (message.chatId !== chatId) {
            if (chatId !== undefined) await each(chatId, messages);
            chatId = message.chatId;
            messages = [];
          }
          messages.push(message);
        }
        if (rows.length < FETCH) break;
      }
      if (chatId !== undefined) await each(chatId, messages);
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async function create(settings: Record<string, unknown>): Promise<number> {
    const [row] = await db
      .insert(datasets)
      .values({ status: "building", formatVersion: FORMAT_VERSION, settings })
      .returning({ id: datasets.id });
    return (row as { id: number }).id;
  }

  /** Examples go in by COPY, in the order they were built. */
  async function openExampleSink(datasetId: number) {
    let ordinal = 0;
    return {
      async write(examples: Example[]) {
        if (examples.length === 0) return;
        let data = "";
        for (const e of examples) {
          data += `${datasetId}\t${ordinal++}\t${copyText(e.id)}\t${e.chat_id}\t${e.started_at}\t${e.split}\t${copyText(
            JSON.stringify(e.speakers),
          )}\t${copyText(JSON.stringify(e.segments))}\n`;
        }
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
      },
      async abort() {
        await pool
          .query("DELETE FROM dataset_examples WHERE dataset_id = $1", [datasetId])
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
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const { rows } = await client.query<{ id: number }>(
        `UPDATE datasets SET status = 'failed', finished_at = now(),
           error = 'its process stopped (no heartbeat for ' || $1 || ' s); build it again'
         WHERE status = 'building' AND heartbeat_at < now() - make_interval(secs => $1) RETURNING id`,
        [staleSeconds],
      );
      const ids = rows.map((row) => row.id);
      if (ids.length > 0)
        await client.query("DELETE FROM dataset_examples WHERE dataset_id = ANY($1::int[])", [ids]);
      await client.query("COMMIT");
      return ids;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /** The chat among `chatIds` where the owner wrote the most messages. */
  async function busiestChat(ownerId: number, chatIds: number[]): Promise<number | undefined> {
    const { rows } = await pool.query<{ chat_id: string }>(
      `SELECT chat_id FROM messages WHERE sender_id = $1 AND chat_id = ANY($2::bigint[])
        GROUP BY chat_id ORDER BY count(*) DESC, chat_id LIMIT 1`,
      [ownerId, chatIds],
    );
    return rows[0] ? Number(rows[0].chat_id) : undefined;
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
    defaultSince,
    chatsToInclude,
    botIds,
    people,
    forEachChatMessages,
    create,
    /** Beats the build's heartbeat until stopped (see db/heartbeat.ts). */
    keepBuildAlive: (id: number, staleSeconds: number) => startHeartbeat(pool, "datasets", id, staleSeconds),
    failAbandonedBuilds,
    openExampleSink,
    finish,
    fail,
    latestReady,
    busiestChat,
    examples,
  };
}
