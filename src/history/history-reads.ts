import { sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { type StepTimings, timed } from "../step-timings.ts";
import type { ChatRecord, MessageKind, StoredMessage } from "./message.ts";

/**
 * What the rest of twin reads from the history (the dataset builder, the conversation context):
 * the history module owns `messages`, `chats` and `people`, so every read of them is here.
 */

/** Rows a server-side cursor fetches at a time: one FETCH's memory, few round trips. */
const FETCH = 10_000;

/**
 * A stored message's columns (table alias `m`), with what the dataset's markers need: the forward's
 * author, a poll's details, and the replied-to message (alias `r`, joined by `REPLIED`) — its first
 * characters are all a reply marker quotes.
 */
const storedMessageColumns = `m.chat_id, m.message_id, m.sender_id,
  (extract(epoch FROM m.sent_at) * 1000)::float8 AS sent_at, m.kind, m.text, m.emoji,
  m.forwarded_from_name, m.forwarded_from_id, m.reply_to_message_id,
  CASE WHEN m.kind = 'poll' THEN m.details END AS details,
  r.message_id AS reply_message_id, r.sender_id AS reply_sender_id, r.sender_name AS reply_sender_name,
  r.kind AS reply_kind, left(r.text, 400) AS reply_text, r.emoji AS reply_emoji,
  CASE WHEN r.kind = 'poll' THEN r.details END AS reply_details`;
const REPLIED = "LEFT JOIN messages r ON r.chat_id = m.chat_id AND r.message_id = m.reply_to_message_id";

type StoredMessageRow = {
  chat_id: string;
  message_id: string;
  sender_id: string | null;
  sent_at: number;
  kind: MessageKind;
  text: string;
  emoji: string | null;
  forwarded_from_name: string | null;
  forwarded_from_id: string | null;
  reply_to_message_id: string | null;
  details: Record<string, unknown> | null;
  reply_message_id: string | null;
  reply_sender_id: string | null;
  reply_sender_name: string | null;
  reply_kind: MessageKind | null;
  reply_text: string | null;
  reply_emoji: string | null;
  reply_details: Record<string, unknown> | null;
};

const idOrNull = (value: string | null) => (value === null ? null : Number(value));

function storedMessageFromRow(row: StoredMessageRow): StoredMessage {
  return {
    chatId: Number(row.chat_id),
    messageId: Number(row.message_id),
    senderId: idOrNull(row.sender_id),
    sentAt: row.sent_at,
    kind: row.kind,
    text: row.text,
    emoji: row.emoji,
    forwardedFromName: row.forwarded_from_name,
    forwardedFromId: idOrNull(row.forwarded_from_id),
    replyToMessageId: idOrNull(row.reply_to_message_id),
    details: row.details,
    replyTo:
      row.reply_message_id === null
        ? null
        : {
            senderId: idOrNull(row.reply_sender_id),
            senderName: row.reply_sender_name,
            kind: row.reply_kind as MessageKind,
            text: row.reply_text ?? "",
            emoji: row.reply_emoji,
            details: row.reply_details,
          },
  };
}

/** Someone the owner talks with, and how much: in their personal chat, and in shared group sessions. */
export type ConversationPartner = {
  id: number;
  name: string | null;
  personalMessages: number;
  groupMessages: number;
  messages: number;
};

export function createHistoryReads({ db, pool }: Pick<Database, "db" | "pool">) {
  const rows = async <Row extends Record<string, unknown>>(query: ReturnType<typeof sql>) =>
    (await db.execute<Row>(query)).rows;

  /**
   * `months` before the owner's last message, as an ISO date; null when they never wrote. A
   * message dated in the future (a wrong clock, an edited export) does not move it.
   */
  async function monthsBeforeLastOwnMessage(ownerId: number, months: number): Promise<string | null> {
    const [row] = await rows<{ since: string | Date | null }>(
      sql`SELECT max(sent_at) - make_interval(months => ${months}) AS since FROM messages
          WHERE sender_id = ${ownerId} AND sent_at <= now() + interval '1 day'`,
    );
    return row?.since ? new Date(row.since).toISOString() : null;
  }

  async function chatsOfTypes(filter: { types: string[]; exclude: number[] }): Promise<ChatRecord[]> {
    const found = await rows<{ id: string; type: string; title: string | null }>(
      sql`SELECT id, type, title FROM chats
          WHERE type = ANY(${sql.param(filter.types)}::text[]) AND NOT (id = ANY(${sql.param(filter.exclude)}::bigint[]))
          ORDER BY id`,
    );
    return found.map((row) => ({ id: Number(row.id), type: row.type, title: row.title }));
  }

  async function chat(id: number): Promise<ChatRecord | undefined> {
    const [row] = await rows<{ type: string; title: string | null }>(
      sql`SELECT type, title FROM chats WHERE id = ${id}`,
    );
    return row ? { id, type: row.type, title: row.title } : undefined;
  }

  /** People known to be bots: the other side of every bot chat. */
  async function botIds(): Promise<number[]> {
    const found = await rows<{ id: string }>(sql`SELECT id FROM chats WHERE type = 'bot_chat'`);
    return found.map((row) => Number(row.id));
  }

  /** Everyone who wrote, with their latest name and how much they wrote (for name precedence). */
  async function senders(): Promise<{ id: number; name: string | null; messages: number }[]> {
    const found = await rows<{ id: string; name: string | null; messages: number }>(
      sql`SELECT p.id, p.name, coalesce(m.n, 0)::int AS messages
          FROM people p LEFT JOIN (SELECT sender_id, count(*) AS n FROM messages GROUP BY sender_id) m
            ON m.sender_id = p.id`,
    );
    return found.map((row) => ({ id: Number(row.id), name: row.name, messages: row.messages }));
  }

  /** The stored names of these people (unknown ids are absent; a name may be null). */
  async function names(ids: number[]): Promise<Map<number, string | null>> {
    const found = await rows<{ id: string; name: string | null }>(
      sql`SELECT id, name FROM people WHERE id = ANY(${sql.param(ids)}::bigint[])`,
    );
    return new Map(found.map((row) => [Number(row.id), row.name]));
  }

  /** The chat among `chatIds` where `senderId` wrote the most messages. */
  async function busiestChat(senderId: number, chatIds: number[]): Promise<number | undefined> {
    const [row] = await rows<{ chat_id: string }>(
      sql`SELECT chat_id FROM messages WHERE sender_id = ${senderId} AND chat_id = ANY(${sql.param(chatIds)}::bigint[])
          GROUP BY chat_id ORDER BY count(*) DESC, chat_id LIMIT 1`,
    );
    return row ? Number(row.chat_id) : undefined;
  }

  /**
   * When the `count` messages of a chat before `before` begin (no service messages): where the
   * recent history a prompt would show at that moment starts; the chat's first message's time when
   * it has fewer, undefined when it has none.
   */
  async function recentSince(chatId: number, before: Date, count: number): Promise<Date | undefined> {
    const [row] = await rows<{ sent_at: string | Date | null }>(
      sql`SELECT min(sent_at) AS sent_at FROM (
            SELECT sent_at FROM messages
            WHERE chat_id = ${chatId} AND sent_at < ${before.toISOString()}::timestamptz AND kind <> 'service'
            ORDER BY sent_at DESC, message_id DESC LIMIT ${count}) recent`,
    );
    return row?.sent_at ? new Date(row.sent_at) : undefined;
  }

  /**
   * A chat's latest `limit` messages that say something (no service messages), oldest first;
   * with `personalOnly`, none unless the chat is a personal chat.
   */
  async function latestMessages(
    chatId: number,
    limit: number,
    options: { personalOnly?: boolean } = {},
  ): Promise<StoredMessage[]> {
    const personal = options.personalOnly
      ? sql`AND EXISTS (SELECT 1 FROM chats c WHERE c.id = ${chatId} AND c.type = 'personal_chat')`
      : sql``;
    const found = await rows<StoredMessageRow>(
      sql`SELECT ${sql.raw(storedMessageColumns)} FROM messages m ${sql.raw(REPLIED)}
          WHERE m.chat_id = ${chatId} AND m.kind <> 'service' ${personal}
          ORDER BY m.sent_at DESC, m.message_id DESC LIMIT ${limit}`,
    );
    return found.reverse().map(storedMessageFromRow);
  }

  /**
   * The people the owner talks with most, busiest first: messages in their personal chat, plus
   * their messages in group sessions the owner also wrote in (a session ends at a silence longer
   * than `gapMinutes`, as a dataset's does). A group-only history (an IRC log) thus has partners.
   */
  async function conversationPartners(options: {
    limit: number;
    gapMinutes: number;
    exclude?: number[] | undefined;
  }): Promise<ConversationPartner[]> {
    const found = await rows<{ id: string; name: string | null; personal: number; in_groups: number }>(
      sql`WITH me AS (SELECT coalesce((SELECT person_id FROM owner), 0) AS id),
          group_messages AS (
            SELECT m.chat_id, m.message_id, m.sender_id, m.sent_at,
                   CASE WHEN m.sent_at - lag(m.sent_at) OVER by_time <= make_interval(mins => ${options.gapMinutes})
                        THEN 0 ELSE 1 END AS starts
            FROM messages m JOIN chats c ON c.id = m.chat_id
            WHERE c.type NOT IN ('personal_chat', 'bot_chat', 'saved_messages') AND m.kind <> 'service'
              AND m.sender_id IS NOT NULL
            WINDOW by_time AS (PARTITION BY m.chat_id ORDER BY m.sent_at, m.message_id)
          ),
          sessions AS (
            SELECT chat_id, sender_id,
                   sum(starts) OVER (PARTITION BY chat_id ORDER BY sent_at, message_id ROWS UNBOUNDED PRECEDING) AS session
            FROM group_messages
          ),
          shared AS (
            SELECT s.chat_id, s.session FROM sessions s, me
            GROUP BY s.chat_id, s.session HAVING bool_or(s.sender_id = me.id)
          ),
          in_groups AS (
            SELECT s.sender_id AS id, count(*) AS n FROM sessions s JOIN shared USING (chat_id, session)
            GROUP BY s.sender_id
          ),
          personal AS (
            SELECT m.chat_id AS id, count(*) AS n FROM messages m JOIN chats c ON c.id = m.chat_id
            WHERE c.type = 'personal_chat' AND m.kind <> 'service' GROUP BY m.chat_id
          )
          SELECT coalesce(personal.id, in_groups.id) AS id, p.name,
                 coalesce(personal.n, 0)::int AS personal, coalesce(in_groups.n, 0)::int AS in_groups
          FROM personal FULL JOIN in_groups ON in_groups.id = personal.id
          LEFT JOIN people p ON p.id = coalesce(personal.id, in_groups.id), me
          WHERE coalesce(personal.id, in_groups.id) > 0 AND coalesce(personal.id, in_groups.id) <> me.id
            AND NOT (coalesce(personal.id, in_groups.id) = ANY(${sql.param(options.exclude ?? [])}::bigint[]))
          ORDER BY coalesce(personal.n, 0) + coalesce(in_groups.n, 0) DESC, 1
          LIMIT ${options.limit}`,
    );
    return found.map((row) => ({
      id: Number(row.id),
      name: row.name,
      personalMessages: row.personal,
      groupMessages: row.in_groups,
      messages: row.personal + row.in_groups,
    }));
  }

  /**
   * The latest `limit` messages of the group sessions where both `ownerId` and `personId` wrote
   * (sessions end at `gapMinutes` of silence), oldest first, grouped by session: the real history
   * of two people who never had a personal chat (an IRC log).
   */
  async function sharedGroupSessions(options: {
    ownerId: number;
    personId: number;
    limit: number;
    gapMinutes: number;
  }): Promise<StoredMessage[][]> {
    const found = await rows<StoredMessageRow & { session: string }>(
      sql`WITH chats_of_both AS (
            SELECT chat_id FROM messages m JOIN chats c ON c.id = m.chat_id
            WHERE c.type NOT IN ('personal_chat', 'bot_chat', 'saved_messages')
              AND m.sender_id IN (${options.ownerId}, ${options.personId})
            GROUP BY chat_id HAVING count(DISTINCT m.sender_id) = 2
          ),
          marked AS (
            SELECT m.*, CASE WHEN m.sent_at - lag(m.sent_at) OVER by_time <= make_interval(mins => ${options.gapMinutes})
                             THEN 0 ELSE 1 END AS starts
            FROM messages m WHERE m.chat_id IN (SELECT chat_id FROM chats_of_both) AND m.kind <> 'service'
            WINDOW by_time AS (PARTITION BY m.chat_id ORDER BY m.sent_at, m.message_id)
          ),
          sessions AS (
            SELECT marked.*, sum(starts) OVER (PARTITION BY chat_id ORDER BY sent_at, message_id
                                               ROWS UNBOUNDED PRECEDING) AS session
            FROM marked
          ),
          shared AS (
            SELECT chat_id, session FROM sessions GROUP BY chat_id, session
            HAVING bool_or(sender_id = ${options.ownerId}) AND bool_or(sender_id = ${options.personId})
          )
          SELECT * FROM (
            SELECT ${sql.raw(storedMessageColumns)}, m.session, m.sent_at AS at
            FROM sessions m JOIN shared USING (chat_id, session) ${sql.raw(REPLIED)}
            ORDER BY m.sent_at DESC, m.message_id DESC LIMIT ${options.limit}
          ) latest ORDER BY at, message_id`,
    );
    const sessions: StoredMessage[][] = [];
    let key: string | undefined;
    for (const row of found) {
      const rowKey = `${row.chat_id}:${row.session}`;
      if (rowKey !== key) sessions.push([]);
      key = rowKey;
      sessions.at(-1)?.push(storedMessageFromRow(row));
    }
    return sessions;
  }

  /**
   * Which script the owner writes in: over their latest `limit` messages with text, the Cyrillic
   * letters and the Latin ones (A–Z and the accented Latin of U+00C0–U+024F). `cyrillicShare` is
   * the Cyrillic share of those letters, null when there are none (or no owner is known yet).
   */
  async function ownerScript(limit = 20_000): Promise<{
    messages: number;
    cyrillicLetters: number;
    latinLetters: number;
    cyrillicShare: number | null;
  }> {
    const [row] = await rows<{ messages: number; cyrillic: string; latin: string }>(
      sql`SELECT count(*)::int AS messages,
                 coalesce(sum(length(regexp_replace(text, '[^\u0400-\u04FF]', '', 'g'))), 0)::bigint AS cyrillic,
                 coalesce(sum(length(regexp_replace(text, '[^A-Za-z\u00C0-\u024F]', '', 'g'))), 0)::bigint AS latin
          FROM (SELECT text FROM messages
                WHERE sender_id = (SELECT person_id FROM owner) AND text <> ''
                ORDER BY sent_at DESC LIMIT ${limit}) latest`,
    );
    const cyrillicLetters = Number(row?.cyrillic ?? 0);
    const latinLetters = Number(row?.latin ?? 0);
    const letters = cyrillicLetters + latinLetters;
    return {
      messages: row?.messages ?? 0,
      cyrillicLetters,
      latinLetters,
      cyrillicShare: letters > 0 ? cyrillicLetters / letters : null,
    };
  }

  /**
   * Calls `each` with every chat's messages in time order, a chat at a time and in runs of at most
   * one FETCH: `chatEnds` says a chat's last run. Read through a server-side cursor, so memory holds
   * a run, whatever the chat's size. Drizzle has no cursors: this one read is raw SQL. The next rows
   * are fetched while `each` works on these: the server and Node work at once. `timings` gets the
   * time spent waiting for rows ("read").
   */
  async function forEachChatMessages(
    chatIds: number[],
    since: string | null,
    each: (chatId: number, messages: StoredMessage[], chatEnds: boolean) => Promise<void>,
    timings: StepTimings = {},
  ): Promise<void> {
    const client = await pool.connect();
    const fetchNext = () => {
      const next = client.query<StoredMessageRow>(`FETCH ${FETCH} FROM history_messages`);
      next.catch(() => undefined); // awaited below; a failure while `each` runs is not unhandled
      return next;
    };
    try {
      await client.query("BEGIN READ ONLY");
      await client.query(
        `DECLARE history_messages NO SCROLL CURSOR FOR
         SELECT ${storedMessageColumns}
         FROM messages m ${REPLIED}
         WHERE m.chat_id = ANY($1::bigint[]) AND ($2::timestamptz IS NULL OR m.sent_at >= $2)
           AND m.kind <> 'service'
         ORDER BY m.chat_id, m.sent_at, m.message_id`,
        [chatIds, since],
      );
      let chatId: number | undefined;
      let messages: StoredMessage[] = [];
      let pending = fetchNext();
      for (;;) {
        const { rows: fetched } = await timed(timings, "read", () => pending);
        const last = fetched.length < FETCH;
        if (!last) pending = fetchNext();
        for (const row of fetched) {
          const message = storedMessageFromRow(row);
          if (message.chatId !== chatId) {
            if (chatId !== undefined) await each(chatId, messages, true);
            chatId = message.chatId;
            messages = [];
          }
          messages.push(message);
        }
        if (last) break;
        if (chatId !== undefined && messages.length > 0) await each(chatId, messages, false);
        messages = [];
      }
      if (chatId !== undefined) await each(chatId, messages, true);
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  return {
    monthsBeforeLastOwnMessage,
    chatsOfTypes,
    chat,
    botIds,
    senders,
    names,
    busiestChat,
    latestMessages,
    recentSince,
    conversationPartners,
    sharedGroupSessions,
    ownerScript,
    forEachChatMessages,
  };
}
