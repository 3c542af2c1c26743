import createDebug from "debug";
import { sql } from "drizzle-orm";
import type pg from "pg";
import { type Database, type Db, withConnection } from "../../db/client.ts";
import { checkTextSearch } from "../../db/text-search.ts";
import { chatSearchConfig, ENGLISH_MARKERS, type LanguageSample, type SearchConfig } from "./language.ts";

const debug = createDebug("twin:memory:index");

/** How far the search index has come: messages indexed of all messages. */
export type IndexProgress = {
  indexed: number;
  total: number;
  /** Why memory is refused on this server (checkTextSearch's reason); then nothing is indexed. */
  refusal?: string | undefined;
};

export type IndexOutcome = IndexProgress & {
  /** done: every message is indexed; busy: another process holds the indexer; refused: see `refusal`. */
  status: "done" | "busy" | "refused" | "cancelled";
};

/** One indexer at a time across processes (pg_try_advisory_lock's key: "twin:mem" in ASCII). */
const INDEX_LOCK = 0x7477696e3a6d656dn;
/** Messages per statement: a crash loses at most this many of work, a progress step is this big. */
const BATCH = 20_000;
/** Above this many pending messages (and more than are indexed) the GIN indexes are dropped and built after. */
const BULK = 50_000;
/** Messages per chat read to tell its language. */
const SAMPLE = 500;

const DOCUMENT_INDEX = "message_search_document";
const TRIGRAM_INDEX = "message_search_trigram";

/** Messages with text: what memory can find. */
const searchable = sql`m.text <> ''`;
const notIndexed = sql`NOT EXISTS (SELECT 1 FROM message_search s WHERE s.chat_id = m.chat_id AND s.message_id = m.message_id)`;

export async function indexProgress(db: Db): Promise<IndexProgress> {
  const { rows } = await db.execute<{ indexed: number; total: number }>(
    sql`SELECT (SELECT count(*) FROM message_search)::int AS indexed,
               (SELECT count(*) FROM messages m WHERE ${searchable})::int AS total`,
  );
  return rows[0] as IndexProgress;
}

/**
 * Indexes every message with text that the search index lacks: each chat in the configuration of
 * its language (kept once chosen, so a chat is never split across two), two chats at a time on two
 * connections. A large backlog (a first import, the backfill after the migration) is loaded without
 * the GIN indexes, which are then built in one pass each; word counts are recounted at the end.
 */
export async function indexMessages(
  database: Pick<Database, "pool" | "embeddedDir">,
  options: { onProgress?: (progress: IndexProgress) => void; signal?: AbortSignal } = {},
): Promise<IndexOutcome> {
  const check = await checkTextSearch(database.pool, { embedded: database.embeddedDir });
  return withConnection(database.pool, async (db) => {
    if (!check.ok) return { status: "refused", refusal: check.reason, ...(await indexProgress(db)) };
    const { rows } = await db.execute<{ locked: boolean }>(
      sql`SELECT pg_try_advisory_lock(${INDEX_LOCK}) AS locked`,
    );
    if (!rows[0]?.locked) return { status: "busy", ...(await indexProgress(db)) };
    try {
      return await indexPending(database.pool, db, check.trigram, options);
    } finally {
      await db.execute(sql`SELECT pg_advisory_unlock(${INDEX_LOCK})`);
    }
  });
}

async function indexPending(
  pool: pg.Pool,
  db: Db,
  trigramAvailable: boolean,
  options: { onProgress?: (progress: IndexProgress) => void; signal?: AbortSignal },
): Promise<IndexOutcome> {
  const before = await indexProgress(db);
  const { rows: pending } = await db.execute<{ chat_id: number; pending: number }>(
    sql`SELECT m.chat_id::float8 AS chat_id, count(*)::int AS pending FROM messages m
        WHERE ${searchable} AND ${notIndexed} GROUP BY m.chat_id ORDER BY pending DESC`,
  );
  const backlog = pending.reduce((sum, chat) => sum + chat.pending, 0);
  let indexed = before.indexed;
  const report = () => options.onProgress?.({ indexed, total: before.total });
  report();
  const bulk = backlog >= BULK && backlog > before.indexed;
  if (bulk) await dropSearchIndexes(db);
  const configs = await chatConfigs(
    db,
    pending.map((chat) => chat.chat_id),
  );
  debug("%d messages in %d chats to index%s", backlog, pending.length, bulk ? " (bulk)" : "");
  const queue = [...pending];
  const worker = () =>
    withConnection(pool, async (connection) => {
      for (let chat = queue.shift(); chat; chat = queue.shift()) {
        let after = Number.MIN_SAFE_INTEGER;
        for (;;) {
          if (options.signal?.aborted) return;
          const done = await indexBatch(
            connection,
            chat.chat_id,
            configs.get(chat.chat_id) ?? "simple",
            after,
          );
          indexed += done.count;
          report();
          if (done.count < BATCH) break;
          after = done.last;
        }
      }
    });
  await Promise.all([worker(), worker()]);
  if (options.signal?.aborted) return { status: "cancelled", ...(await indexProgress(db)) };
  await buildSearchIndexes(pool, db, trigramAvailable);
  if (backlog > 0) await recountTerms(db);
  return { status: "done", ...(await indexProgress(db)) };
}

/** Indexes up to BATCH messages of a chat after message id `after`; returns how many and the last id. */
async function indexBatch(
  db: Db,
  chatId: number,
  config: SearchConfig,
  after: number,
): Promise<{ count: number; last: number }> {
  const { rows } = await db.execute<{ count: number; last: number | null }>(sql`
    WITH batch AS (
      SELECT m.chat_id, m.message_id, m.sent_at, m.sender_id, m.text FROM messages m
      WHERE m.chat_id = ${chatId} AND m.message_id > ${after} AND ${searchable} AND ${notIndexed}
      ORDER BY m.message_id LIMIT ${BATCH}
    ), added AS (
      INSERT INTO message_search (chat_id, message_id, sent_at, sender_id, config, document, text)
      SELECT chat_id, message_id, sent_at, sender_id, ${config}::regconfig,
             to_tsvector(${config}::regconfig, text), text
      FROM batch
      ON CONFLICT DO NOTHING
    )
    SELECT count(*)::int AS count, max(message_id)::float8 AS last FROM batch`);
  const row = rows[0] as { count: number; last: number | null };
  return { count: row.count, last: row.last ?? after };
}

/**
 * The configuration of each chat: the one its indexed messages already have, else the language of
 * its latest messages (language.ts).
 */
async function chatConfigs(db: Db, chatIds: number[]): Promise<Map<number, SearchConfig>> {
  const configs = new Map<number, SearchConfig>();
  if (chatIds.length === 0) return configs;
  const ids = sql`${`{${chatIds.join(",")}}`}::bigint[]`;
  const { rows: known } = await db.execute<{ chat_id: number; config: SearchConfig | null }>(sql`
    SELECT c.id::float8 AS chat_id,
           (SELECT s.config::text FROM message_search s WHERE s.chat_id = c.id LIMIT 1) AS config
    FROM unnest(${ids}) c(id)`);
  for (const row of known) if (row.config) configs.set(row.chat_id, row.config);
  const unknown = chatIds.filter((id) => !configs.has(id));
  if (unknown.length === 0) return configs;
  const english = `\\m(${ENGLISH_MARKERS.join("|")})\\M`;
  const { rows: samples } = await db.execute<LanguageSample & { chat_id: number }>(sql`
    SELECT c.id::float8 AS chat_id, count(*)::int AS messages,
           count(*) FILTER (WHERE sample.text ~ '[А-Яа-яЁё]')::int AS cyrillic,
           count(*) FILTER (WHERE sample.text ~* ${english})::int AS english
    FROM unnest(${sql`${`{${unknown.join(",")}}`}::bigint[]`}) c(id),
         LATERAL (SELECT m.text FROM messages m WHERE m.chat_id = c.id AND ${searchable}
                  ORDER BY m.sent_at DESC LIMIT ${SAMPLE}) sample
    GROUP BY c.id`);
  for (const sample of samples) configs.set(sample.chat_id, chatSearchConfig(sample));
  return configs;
}

async function dropSearchIndexes(db: Db): Promise<void> {
  await db.execute(sql.raw(`DROP INDEX IF EXISTS ${DOCUMENT_INDEX}, ${TRIGRAM_INDEX}`));
}

/** The GIN indexes, each on its own connection at once (a GIN build uses one core). */
async function buildSearchIndexes(pool: pg.Pool, db: Db, trigramAvailable: boolean): Promise<void> {
  const trigram = trigramAvailable && (await hasTrigram(db));
  const statements = [
    `CREATE INDEX IF NOT EXISTS ${DOCUMENT_INDEX} ON message_search USING gin (document)`,
    ...(trigram
      ? [`CREATE INDEX IF NOT EXISTS ${TRIGRAM_INDEX} ON message_search USING gin (text gin_trgm_ops)`]
      : []),
  ];
  await Promise.all(
    statements.map((statement) =>
      withConnection(pool, (connection) =>
        connection.transaction(async (transaction) => {
          await transaction.execute(sql`SET LOCAL maintenance_work_mem = '256MB'`);
          await transaction.execute(sql.raw(statement));
        }),
      ),
    ),
  );
  await db.execute(sql`ANALYZE message_search`);
}

/** Whether pg_trgm is installed in this database (the migration installs it where it can). */
export async function hasTrigram(db: Db): Promise<boolean> {
  const { rows } = await db.execute<{ installed: boolean }>(
    sql`SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') AS installed`,
  );
  return rows[0]?.installed ?? false;
}

/** Recounts how many messages hold each word (a few seconds at a million messages), in one transaction. */
async function recountTerms(db: Db): Promise<void> {
  await db.transaction(async (transaction) => {
    await transaction.execute(sql`DELETE FROM search_terms`);
    await transaction.execute(sql`INSERT INTO search_terms (config, lexeme, documents)
      SELECT s.config, t.lexeme, count(*)::int FROM message_search s, unnest(s.document) t GROUP BY 1, 2`);
  });
  await db.execute(sql`ANALYZE search_terms`);
}
