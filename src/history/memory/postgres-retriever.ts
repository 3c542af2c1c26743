import { type SQL, sql } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { searchConfigs } from "./language.ts";
import type {
  ExcludedSpan,
  MemoryScope,
  RecalledMessage,
  RecalledWindow,
  RetrievalQuery,
  Retriever,
} from "./retriever.ts";
import { anyOf, chooseTerms, type Term, windowAround } from "./windows.ts";

/** At most this many messages may match the chosen words of one query (see chooseTerms). */
const MATCH_BUDGET = 5_000;
const MOST_TERMS = 8;
/** Hits read per window wanted: neighbouring hits fall into one window, and spans are skipped. */
const HITS_PER_WINDOW = 4;
/** The trigram fallback is for short messages (slang, a misspelt word): a longer one has words to search. */
const TRIGRAM_QUERY_CHARACTERS = 60;

/** A hit as both searches read it. */
type HitRow = { chat_id: number; message_id: number; sent_at: string; score: number };

function hitOf(row: HitRow, via: Hit["via"]): Hit {
  return {
    chatId: row.chat_id,
    messageId: row.message_id,
    sentAt: new Date(row.sent_at),
    score: row.score,
    via,
  };
}

type Hit = { chatId: number; messageId: number; sentAt: Date; score: number; via: "text" | "trigram" };

/**
 * Memory over the history store: full-text search in each chat's language, with the query's rarest
 * words weighted by how rare they are (idf), and trigram similarity as the fallback when words find
 * too little (slang, misspellings, a query of stop words). Every read is limited to the scope's
 * chats (the privacy rule) and leaves out the spans already in the prompt.
 */
export function createPostgresRetriever(
  db: Db,
  options: { gapMs: number; trigram: () => Promise<boolean> },
): Retriever {
  return {
    async retrieve(query) {
      if (query.limit <= 0) return [];
      const text = query.text.join("\n").trim();
      if (!text) return [];
      const chats = await scopeChats(db, query.scope);
      if (chats !== undefined && chats.length === 0) return [];
      const filter = hitFilter(chats, query.exclude, query.before);
      const hits = await textHits(db, text, filter, query.limit * HITS_PER_WINDOW);
      let windows = await windowsOf(db, hits, query, options.gapMs);
      if (windows.length < query.limit && (await options.trigram())) {
        const newest = (query.text.at(-1) ?? "").trim();
        const seen = windows.flatMap((w) => w.messages.map((m) => `${w.chatId}:${m.messageId}`));
        const more = await trigramHits(
          db,
          newest,
          chats,
          filter,
          (query.limit - windows.length) * HITS_PER_WINDOW,
          seen,
        );
        windows = [
          ...windows,
          ...(await windowsOf(
            db,
            more,
            { ...query, limit: query.limit - windows.length },
            options.gapMs,
            seen,
          )),
        ];
      }
      return windows;
    },
  };
}

/** The chats a scope may read; undefined: all of them. */
export async function scopeChats(db: Db, scope: MemoryScope): Promise<number[] | undefined> {
  if (scope.kind === "all") return undefined;
  if (scope.kind === "group") return [scope.chatId];
  // The chats the person wrote in (a skip through messages_sender: one probe per chat, not per
  // message), their private chat, and the chats whose member list in the export names them.
  const { rows } = await db.execute<{ id: number }>(sql`
    WITH RECURSIVE wrote(id) AS (
      SELECT min(chat_id) FROM messages WHERE sender_id = ${scope.personId}
      UNION ALL
      SELECT (SELECT min(m.chat_id) FROM messages m WHERE m.sender_id = ${scope.personId} AND m.chat_id > wrote.id)
      FROM wrote WHERE wrote.id IS NOT NULL
    )
    SELECT id::float8 AS id FROM wrote WHERE id IS NOT NULL
    UNION SELECT id::float8 FROM chats WHERE id = ${scope.personId}
    UNION SELECT m.chat_id::float8 FROM messages m JOIN people p ON p.id = ${scope.personId}
      WHERE m.kind = 'service' AND m.details ? 'members' AND (m.details -> 'members') ? p.name`);
  return rows.map((row) => row.id);
}

/** What every hit must satisfy: in scope, before the bound, outside the spans already shown. */
export function hitFilter(
  chats: number[] | undefined,
  exclude: ExcludedSpan[],
  before: Date | undefined,
): SQL {
  const parts: SQL[] = [];
  if (chats) parts.push(sql`s.chat_id = ANY(${`{${chats.join(",")}}`}::bigint[])`);
  if (before) parts.push(sql`s.sent_at < ${before.toISOString()}::timestamptz`);
  if (exclude.length > 0) {
    parts.push(sql`NOT EXISTS (
      SELECT 1 FROM unnest(${`{${exclude.map((e) => e.chatId).join(",")}}`}::bigint[],
                           ${`{${exclude.map((e) => e.from.toISOString()).join(",")}}`}::timestamptz[],
                           ${`{${exclude.map((e) => e.to.toISOString()).join(",")}}`}::timestamptz[]) e(chat_id, first, last)
      WHERE e.chat_id = s.chat_id AND s.sent_at BETWEEN e.first AND e.last)`);
  }
  return parts.length > 0 ? sql.join(parts, sql` AND `) : sql`true`;
}

const configArray = sql`${`{${searchConfigs.join(",")}}`}::regconfig[]`;

/** Full-text hits: messages holding any of the query's rarest words, best by the summed rarity of the words they hold. */
async function textHits(db: Db, text: string, filter: SQL, limit: number): Promise<Hit[]> {
  // A word's matches are counted over every configuration: the index holds them all, so a Russian
  // word read by the English configuration still reads every Russian message holding it.
  const { rows: known } = await db.execute<Term & { inConfig: number }>(sql`
    SELECT q.config::text AS config, q.lexeme, t.documents AS "inConfig",
           (SELECT sum(a.documents)::int FROM search_terms a
             WHERE a.config = ANY(${configArray}) AND a.lexeme = q.lexeme) AS documents
    FROM (SELECT DISTINCT c.config, x.lexeme
            FROM unnest(${configArray}) c(config),
                 unnest(tsvector_to_array(to_tsvector(c.config, ${text}))) x(lexeme)) q
    JOIN search_terms t ON t.config = q.config AND t.lexeme = q.lexeme`);
  const chosen = chooseTerms(known, { budget: MATCH_BUDGET, most: MOST_TERMS * searchConfigs.length });
  if (chosen.length === 0) return [];
  const { rows: size } = await db.execute<{ messages: number }>(
    sql`SELECT greatest(reltuples, 1)::float8 AS messages FROM pg_class WHERE oid = 'message_search'::regclass`,
  );
  const messages = Math.max(size[0]?.messages ?? 1, ...chosen.map((t) => t.documents));
  const matches = searchConfigs
    .map((config) => ({ config, lexemes: chosen.filter((t) => t.config === config).map((t) => t.lexeme) }))
    .filter((q) => q.lexemes.length > 0)
    .map((q) => sql`(s.config = ${q.config}::regconfig AND s.document @@ ${anyOf(q.lexemes)}::tsquery)`);
  // Each message scores the summed rarity (idf) of the chosen words it holds: one tsquery test per word.
  const score = sql.join(
    chosen.map(
      (t) =>
        sql`CASE WHEN s.config = ${t.config}::regconfig AND s.document @@ ${anyOf([t.lexeme])}::tsquery THEN ${Math.log(1 + messages / t.inConfig)}::float8 ELSE 0 END`,
    ),
    sql` + `,
  );
  const { rows } = await db.execute<HitRow>(sql`
    SELECT s.chat_id::float8, s.message_id::float8, s.sent_at, (${score}) AS score
    FROM message_search s
    WHERE (${sql.join(matches, sql` OR `)}) AND ${filter}
    ORDER BY score DESC, s.sent_at DESC
    LIMIT ${limit}`);
  return rows.map((row) => hitOf(row, "text"));
}

/** Beyond this many messages in scope, the trigram fallback goes through the trigram index. */
const DIRECT_COMPARISONS = 20_000;

async function scopeSize(db: Db, chats: number[]): Promise<number> {
  const { rows } = await db.execute<{ messages: number }>(sql`
    SELECT count(*)::int AS messages FROM message_search WHERE chat_id = ANY(${`{${chats.join(",")}}`}::bigint[])`);
  return rows[0]?.messages ?? 0;
}

/** Trigram hits: messages that look like the newest message, letter by letter. */
async function trigramHits(
  db: Db,
  text: string,
  chats: number[] | undefined,
  filter: SQL,
  limit: number,
  seen: string[],
): Promise<Hit[]> {
  if (text.length < 3 || text.length > TRIGRAM_QUERY_CHARACTERS) return [];
  // In a friend's or a group's few chats, comparing each message is cheaper than the trigram index,
  // which would first gather look-alikes from the whole history; in a scope of years of messages
  // the index is the cheaper again. Counting the scope is an index-only read of the primary key.
  const direct = chats && (await scopeSize(db, chats)) <= DIRECT_COMPARISONS;
  const candidates = direct
    ? sql`(SELECT * FROM message_search s WHERE ${filter} OFFSET 0) s WHERE similarity(s.text, ${text}) >= 0.3`
    : sql`message_search s WHERE s.text % ${text} AND ${filter}`;
  const { rows } = await db.execute<HitRow>(sql`
    SELECT s.chat_id::float8, s.message_id::float8, s.sent_at, similarity(s.text, ${text})::float8 AS score
    FROM ${candidates}
    ORDER BY score DESC, s.sent_at DESC
    LIMIT ${limit + seen.length}`);
  return rows
    .filter((row) => !seen.includes(`${row.chat_id}:${row.message_id}`))
    .map((row) => hitOf(row, "trigram"));
}

/**
 * The windows around hits, best hit first, until `query.limit`: a hit inside a window already taken
 * adds nothing. Window messages inside an excluded span or after `before` are left out too.
 */
async function windowsOf(
  db: Db,
  hits: Hit[],
  query: RetrievalQuery,
  gapMs: number,
  seen: string[] = [],
): Promise<RecalledWindow[]> {
  if (hits.length === 0) return [];
  const { rows } = await db.execute<{
    hit: number;
    message_id: number;
    sender_id: number | null;
    sender_name: string | null;
    sent_at: string;
    text: string;
    title: string | null;
    type: string;
  }>(sql`
    SELECT h.ordinality::int AS hit, w.message_id::float8, w.sender_id::float8, w.sender_name, w.sent_at, w.text,
           c.title, coalesce(c.type, 'unknown') AS type
    FROM unnest(${`{${hits.map((h) => h.chatId).join(",")}}`}::bigint[],
                ${`{${hits.map((h) => h.messageId).join(",")}}`}::bigint[],
                ${`{${hits.map((h) => h.sentAt.toISOString()).join(",")}}`}::timestamptz[]) WITH ORDINALITY h(chat_id, message_id, sent_at, ordinality)
    LEFT JOIN chats c ON c.id = h.chat_id,
    LATERAL (
      (SELECT m.message_id, m.sender_id, m.sender_name, m.sent_at, m.text FROM messages m
        WHERE m.chat_id = h.chat_id AND m.text <> '' AND (m.sent_at, m.message_id) <= (h.sent_at, h.message_id)
        ORDER BY m.sent_at DESC, m.message_id DESC LIMIT 8)
      UNION ALL
      (SELECT m.message_id, m.sender_id, m.sender_name, m.sent_at, m.text FROM messages m
        WHERE m.chat_id = h.chat_id AND m.text <> '' AND (m.sent_at, m.message_id) > (h.sent_at, h.message_id)
        ORDER BY m.sent_at, m.message_id LIMIT 8)
    ) w
    ORDER BY hit, w.sent_at, w.message_id`);
  const taken = new Set(seen);
  const windows: RecalledWindow[] = [];
  hits.forEach((hit, index) => {
    if (windows.length >= query.limit || taken.has(`${hit.chatId}:${hit.messageId}`)) return;
    const near = rows.filter((row) => row.hit === index + 1);
    const around: RecalledMessage[] = near
      .map((row) => ({
        messageId: row.message_id,
        senderId: row.sender_id,
        senderName: row.sender_name,
        sentAt: new Date(row.sent_at),
        text: row.text,
      }))
      .filter((message) => message.messageId === hit.messageId || allowed(hit.chatId, message.sentAt, query));
    const messages = windowAround(around, hit.messageId, { gapMs }).filter(
      (message) => !taken.has(`${hit.chatId}:${message.messageId}`),
    );
    if (messages.length === 0) return;
    for (const message of messages) taken.add(`${hit.chatId}:${message.messageId}`);
    windows.push({
      chatId: hit.chatId,
      chatTitle: near[0]?.title ?? null,
      chatType: near[0]?.type ?? "unknown",
      hitMessageId: hit.messageId,
      via: hit.via,
      score: hit.score,
      messages,
    });
  });
  return windows;
}

function allowed(chatId: number, sentAt: Date, query: RetrievalQuery): boolean {
  if (query.before && sentAt >= query.before) return false;
  return !query.exclude.some((span) => span.chatId === chatId && sentAt >= span.from && sentAt <= span.to);
}
