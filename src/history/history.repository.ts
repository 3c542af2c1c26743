import { pipeline } from "node:stream/promises";
import createDebug from "debug";
import { eq, max, sql } from "drizzle-orm";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { type Database, onConnection, type Transaction } from "../db/client.ts";
import { buildDeferredIndexes, deferIndexes } from "../db/deferred-indexes.ts";
import { startHeartbeat } from "../db/heartbeat.ts";
import { type StepTimings, timed } from "../step-timings.ts";
import { messageCopyColumns } from "./copy-format.ts";
import { type ForgetDependents, forgetEverything, forgetPersonalChat } from "./forget.ts";
import { HistoryError } from "./history.errors.ts";
import { type ImportCounts, imports, owner, people } from "./history.tables.ts";
import { createHistoryReads } from "./history-reads.ts";
import type { ChatRecord, PersonSighting } from "./message.ts";
import { choosePerson, type PersonLookup, type PersonQuery } from "./person-lookup.ts";
import { historyStats } from "./stats.ts";

const debug = createDebug("twin:import");

/** One transaction's worth of history: chats and people first, then messages as COPY text. */
export type HistoryBatch = {
  chats: ChatRecord[];
  people: PersonSighting[];
  /** COPY text lines in `messageCopyColumns` order (see copy-format.ts), de-duplicated by key. */
  messageData: Buffer;
  messageCount: number;
};

export type BatchResult = { inserted: number; updated: number };

const compared = messageCopyColumns.filter((column) => column !== "source" && column !== "import_id");
const insertColumns = messageCopyColumns.join(", ");
/** A row without details (the userbot downloads no media) keeps what an export stored. */
const incoming = (column: string) =>
  column === "details" ? "coalesce(EXCLUDED.details, messages.details)" : `EXCLUDED.${column}`;
const changedRow = `(${compared.map((c) => `messages.${c}`).join(", ")}) IS DISTINCT FROM (${compared
  .map(incoming)
  .join(", ")})`;

/**
 * Merge staged rows into `messages`. A row is updated only when it differs and is not older than
 * what is stored (an older export must never undo an edit); `xmax = 0` tells inserts from updates.
 * `firstOfEachKey`: the batch holds a key twice (a chat listed twice in one file), which one
 * INSERT … ON CONFLICT cannot take; the first staged row of each key is kept, as the reader keeps
 * the first of a chat's repeated ids.
 */
const mergeSql = (firstOfEachKey: boolean) => `
WITH merged AS (
  INSERT INTO messages (${insertColumns})
  ${
    firstOfEachKey
      ? `SELECT DISTINCT ON (chat_id, message_id) ${insertColumns} FROM staging_messages ORDER BY chat_id, message_id, ctid`
      : `SELECT ${insertColumns} FROM staging_messages`
  }
  ON CONFLICT (chat_id, message_id) DO UPDATE SET
    ${messageCopyColumns
      .filter((c) => c !== "chat_id" && c !== "message_id")
      .map((c) => `${c} = ${incoming(c)}`)
      .join(",\n    ")}
  WHERE (messages.edited_at IS NULL OR EXCLUDED.edited_at >= messages.edited_at)
    AND ${changedRow}
  RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted)::int AS inserted, count(*) FILTER (WHERE NOT inserted)::int AS updated
FROM merged`;
const mergeStaged = { everyRow: mergeSql(false), firstOfEachKey: mergeSql(true) };

/** Where an import or a pull stands, committed with the batch that got it there. */
export type BatchProgress = {
  importId: number;
  /** The desktop import: bytes of the file read. */
  committedBytes?: number | undefined;
  /** What the source writes with the batch, in its transaction (the userbot: its cursors). */
  alsoWrite?: ((transaction: Transaction) => Promise<void>) | undefined;
};

export type ImportSession = {
  /** Writes one batch in its own transaction; on error nothing of the batch stays. */
  writeBatch(batch: HistoryBatch, progress: BatchProgress): Promise<BatchResult>;
  /** Builds the indexes a bulk load deferred (once; release does it if nothing did before). */
  finishLoad(): Promise<void>;
  /** Finishes the load, then gives the connection back. */
  release(): Promise<void>;
  /** Milliseconds spent per step of the writes so far (for `DEBUG=twin:import` and the bench). */
  timings: StepTimings;
};

export function createHistoryRepository({ db, pool }: Pick<Database, "db" | "pool">) {
  const reads = createHistoryReads({ db, pool });

  async function startImport(input: {
    source: string;
    fileName: string;
    fileBytes: number;
  }): Promise<number> {
    const [row] = await db
      .insert(imports)
      .values({ ...input, status: "running" })
      .returning({ id: imports.id });
    return (row as { id: number }).id;
  }

  /**
   * Marks imports whose process is gone (running, heartbeat older than `staleSeconds`) as
   * interrupted; what they committed stays, and the same import again resumes them.
   */
  async function markInterruptedImports(
    staleSeconds: number,
  ): Promise<{ id: number; fileName: string | null }[]> {
    const { rows } = await db.execute<{ id: number; file_name: string | null }>(
      sql`UPDATE imports SET status = 'interrupted', finished_at = now(),
            error = 'its process stopped (no heartbeat for ' || ${staleSeconds} || ' s); import the same file again to resume'
          WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => ${staleSeconds})
          RETURNING id, file_name`,
    );
    return rows.map((row) => ({ id: row.id, fileName: row.file_name }));
  }

  async function finishImport(
    id: number,
    outcome: {
      status: "succeeded" | "failed" | "interrupted";
      counts: ImportCounts;
      ownerId: number | null;
      error?: string;
    },
  ): Promise<void> {
    await db
      .update(imports)
      .set({
        status: outcome.status,
        counts: outcome.counts,
        ownerId: outcome.ownerId,
        error: outcome.error ?? null,
        finishedAt: new Date(),
      })
      .where(eq(imports.id, id));
  }

  /** When the latest import (an export file or a userbot pull) ended, however it ended; undefined before any. */
  async function lastImportEnded(): Promise<Date | undefined> {
    const [row] = await db.select({ at: max(imports.finishedAt) }).from(imports);
    return row?.at ?? undefined;
  }

  async function getOwner(): Promise<
    { personId: number; name: string | null; timeZone: string } | undefined
  > {
    const [row] = await db
      .select({ personId: owner.personId, name: owner.name, timeZone: owner.timeZone })
      .from(owner)
      .limit(1);
    return row;
  }

  /** Records whose history this is; a database holds one owner's history, so another is refused. */
  async function setOwner(personId: number, name: string | null, timeZone: string): Promise<void> {
    const current = await getOwner();
    if (current && current.personId !== personId) {
      throw new HistoryError(
        `This database holds the history of ${current.name ?? "another account"} (id ${current.personId}); ` +
          `refusing to add the account ${personId}. Use another TWIN_DATA_DIR or DATABASE_URL.`,
      );
    }
    await db
      .insert(owner)
      .values({ personId, name, timeZone })
      .onConflictDoUpdate({ target: owner.singleton, set: { name, timeZone, updatedAt: new Date() } });
  }

  /**
   * A connection for one import's batches. With `bulkIfEmpty` (an export file), a first import into
   * an empty `messages` table COPYs straight into it and builds the secondary indexes at the end
   * (see deferred-indexes.ts); otherwise each batch is staged and merged.
   */
  async function openImportSession(options: { bulkIfEmpty?: boolean } = {}): Promise<ImportSession> {
    const client = await pool.connect();
    const timings: StepTimings = {};
    // A crash loses at most the last few batches, which a re-run restores: imports are idempotent.
    await client.query("SET synchronous_commit = off");
    await client.query(
      "CREATE TEMP TABLE IF NOT EXISTS staging_messages (LIKE messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    );
    const bulk = options.bulkIfEmpty
      ? await timed(timings, "defer indexes", () => deferIndexes(client, "messages"))
      : false;
    const target = { direct: bulk };
    let deferred = bulk;
    const finishLoad = async () => {
      if (!deferred) return;
      deferred = false;
      target.direct = false;
      await timed(timings, "build indexes", () => buildDeferredIndexes(pool, { client, table: "messages" }));
    };
    return {
      timings,
      writeBatch: (batch, progress) => writeBatch(client, batch, progress, target, timings),
      finishLoad,
      release: async () => {
        try {
          await finishLoad();
        } finally {
          await client.query("DROP TABLE IF EXISTS staging_messages").catch(() => undefined);
          client.release();
        }
      },
    };
  }

  /**
   * Finds a person by id or name (see person-lookup.ts); the owner only with `includeOwner`.
   * Loose matches: the name in any case, or containing the query; at most `limit`.
   */
  async function lookupPerson(
    query: PersonQuery,
    options: { includeOwner?: boolean; limit?: number } = {},
  ): Promise<PersonLookup> {
    const id = "id" in query ? query.id : null;
    const name = "name" in query ? query.name : null;
    const { rows } = await db.execute<{
      id: string;
      name: string | null;
      messages: number;
      last_at: Date | null;
    }>(
      sql`SELECT p.id, p.name, s.messages, s.last_at
          FROM people p
          CROSS JOIN LATERAL (SELECT count(*)::int AS messages, max(m.sent_at) AS last_at
                              FROM messages m WHERE m.sender_id = p.id AND m.kind <> 'service') s
          WHERE (p.id > 0 OR p.id = (SELECT person_id FROM owner))
            AND (${options.includeOwner ?? false} OR p.id <> coalesce((SELECT person_id FROM owner), 0))
            AND CASE WHEN ${id}::bigint IS NOT NULL THEN p.id = ${id}::bigint
                     ELSE strpos(lower(p.name), lower(${name}::text)) > 0 END
          ORDER BY (p.name = ${name}::text) DESC, s.messages DESC LIMIT ${options.limit ?? 10}`,
    );
    const matches = rows.map((row) => ({
      id: Number(row.id),
      name: row.name,
      messages: row.messages,
      lastMessageAt: row.last_at === null ? null : new Date(row.last_at), // drizzle returns timestamps as text
    }));
    if ("id" in query)
      return { found: matches[0] ?? { id: query.id, name: null, messages: 0, lastMessageAt: null } };
    return choosePerson(query.name, matches);
  }

  /** A person's latest name as stored, or null when the history does not know them. */
  async function personName(id: number): Promise<string | null> {
    const [row] = await db.select({ name: people.name }).from(people).where(eq(people.id, id));
    return row?.name ?? null;
  }

  return {
    ...reads,
    /** What the store holds, for `twin stats` and /status; sessions end at `gapMinutes` of silence. */
    stats: async (options: { top?: number; gapMinutes: number }) =>
      historyStats(
        { db },
        {
          top: options.top,
          partners:
            options.top === 0
              ? []
              : await reads.conversationPartners({
                  limit: options.top ?? 10,
                  gapMinutes: options.gapMinutes,
                }),
        },
      ),
    /** Deletes a personal chat and, in the same transaction, what `dependents` made from it. */
    forgetPersonalChat: (personId: number, dependents: ForgetDependents) =>
      forgetPersonalChat(db, personId, dependents),
    /** Deletes every chat, message and person but the owner, and what `dependents` made from them. */
    forgetEverything: (dependents: ForgetDependents) => forgetEverything(db, dependents),
    lookupPerson,
    personName,
    startImport,
    /** Beats the import's heartbeat until stopped (see db/heartbeat.ts). */
    keepImportAlive: (id: number, staleSeconds: number) => startHeartbeat(db, "imports", id, staleSeconds),
    markInterruptedImports,
    finishImport,
    lastImportEnded,
    getOwner,
    setOwner,
    openImportSession,
  };
}

/**
 * Writes one batch in a transaction. `target.direct`: COPY straight into `messages` (a bulk first
 * load); a key already stored (a chat listed twice in the file) turns the session to staging and
 * merging, from this batch on.
 */
async function writeBatch(
  client: pg.PoolClient,
  batch: HistoryBatch,
  progress: BatchProgress,
  target: { direct: boolean },
  timings: StepTimings,
): Promise<BatchResult> {
  if (target.direct) {
    try {
      return await writeBatchOnce(client, batch, progress, { copyInto: "messages" }, timings);
    } catch (error) {
      if ((error as { code?: string }).code !== UNIQUE_VIOLATION) throw error;
      debug("a message key the load already holds: staging and merging from here on");
      target.direct = false;
    }
  }
  try {
    return await writeBatchOnce(client, batch, progress, { copyInto: "staging_messages" }, timings);
  } catch (error) {
    if ((error as { code?: string }).code !== ROW_AFFECTED_TWICE) throw error;
    return writeBatchOnce(
      client,
      batch,
      progress,
      { copyInto: "staging_messages", firstOfEachKey: true },
      timings,
    );
  }
}

const UNIQUE_VIOLATION = "23505";
/** "ON CONFLICT DO UPDATE command cannot affect row a second time": a key twice in one batch. */
const ROW_AFFECTED_TWICE = "21000";

async function writeBatchOnce(
  client: pg.PoolClient,
  batch: HistoryBatch,
  progress: BatchProgress,
  how: { copyInto: "messages" | "staging_messages"; firstOfEachKey?: boolean },
  timings: StepTimings,
): Promise<BatchResult> {
  const { copyInto } = how;
  await client.query("BEGIN");
  try {
    if (batch.chats.length > 0) {
      await client.query(
        `INSERT INTO chats (id, type, title)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
         ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, title = EXCLUDED.title, updated_at = now()
         WHERE (chats.type, chats.title) IS DISTINCT FROM (EXCLUDED.type, EXCLUDED.title)`,
        [batch.chats.map((c) => c.id), batch.chats.map((c) => c.type), batch.chats.map((c) => c.title)],
      );
    }
    if (batch.people.length > 0) {
      await timed(timings, "people", () =>
        client.query(
          `INSERT INTO people (id, name, name_seen_at)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, name_seen_at = EXCLUDED.name_seen_at
         WHERE EXCLUDED.name IS NOT NULL AND (people.name IS NULL OR people.name_seen_at IS NULL
           OR EXCLUDED.name_seen_at > people.name_seen_at)`,
          [
            batch.people.map((p) => p.id),
            batch.people.map((p) => p.name),
            batch.people.map((p) => new Date(p.seenAt).toISOString()),
          ],
        ),
      );
    }
    let result: BatchResult = { inserted: 0, updated: 0 };
    if (batch.messageCount > 0) {
      const copy = client.query(copyFrom(`COPY ${copyInto} (${insertColumns}) FROM STDIN`));
      await timed(timings, `copy into ${copyInto}`, () =>
        pipeline(
          (async function* () {
            yield batch.messageData;
          })(),
          copy,
        ),
      );
      if (copyInto === "messages") result = { inserted: batch.messageCount, updated: 0 };
      else {
        const merged = await timed(timings, "merge", () =>
          client.query<BatchResult>(how.firstOfEachKey ? mergeStaged.firstOfEachKey : mergeStaged.everyRow),
        );
        result = merged.rows[0] as BatchResult;
      }
    }
    if (progress.committedBytes !== undefined) {
      await client.query("UPDATE imports SET committed_bytes = $2 WHERE id = $1", [
        progress.importId,
        progress.committedBytes,
      ]);
    }
    await progress.alsoWrite?.(onConnection(client));
    await timed(timings, "commit", () => client.query("COMMIT"));
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}

export type HistoryRepository = ReturnType<typeof createHistoryRepository>;
