import type pg from "pg";

export type HistoryStats = {
  owner: { id: number; name: string | null } | null;
  chatsByType: { type: string; chats: number; messages: number }[];
  messages: number;
  people: number;
  firstMessageAt: Date | null;
  lastMessageAt: Date | null;
  /** The owner's personal chats, busiest first. */
  topPartners: { chatId: number; name: string | null; messages: number; ownerMessages: number }[];
  /** People the owner replied to, or who replied to the owner, in groups: partners where there are no personal chats. */
  topRepliers: { personId: number; name: string | null; replies: number }[];
};

/** What the store holds: chats by type, counts, date range and the owner's top conversation partners. */
export async function historyStats(
  { pool }: { pool: pg.Pool },
  options: { top?: number } = {},
): Promise<HistoryStats> {
  const [owner, byType, totals, partners, repliers] = await Promise.all([
    pool.query<{ id: string; name: string | null }>("SELECT person_id AS id, name FROM owner LIMIT 1"),
    pool.query<{ type: string; chats: number; messages: number }>(
      `SELECT c.type, count(*)::int AS chats, coalesce(sum(m.n), 0)::int AS messages
       FROM chats c LEFT JOIN (SELECT chat_id, count(*) AS n FROM messages GROUP BY chat_id) m ON m.chat_id = c.id
       GROUP BY c.type ORDER BY messages DESC, c.type`,
    ),
    pool.query<{ messages: number; people: number; first: Date | null; last: Date | null }>(
      `SELECT (SELECT count(*) FROM messages)::int AS messages, (SELECT count(*) FROM people)::int AS people,
              (SELECT min(sent_at) FROM messages) AS first, (SELECT max(sent_at) FROM messages) AS last`,
    ),
    pool.query<{ chat_id: string; name: string | null; messages: number; owner_messages: number }>(
      `SELECT m.chat_id, coalesce(p.name, c.title) AS name, count(*)::int AS messages,
              count(*) FILTER (WHERE m.sender_id = (SELECT person_id FROM owner))::int AS owner_messages
       FROM messages m JOIN chats c ON c.id = m.chat_id LEFT JOIN people p ON p.id = m.chat_id
       WHERE c.type = 'personal_chat' AND m.kind <> 'service'
       GROUP BY m.chat_id, p.name, c.title ORDER BY messages DESC LIMIT $1`,
      [options.top ?? 10],
    ),
    pool.query<{ person_id: string; name: string | null; replies: number }>(
      `WITH me AS (SELECT person_id AS id FROM owner),
       pairs AS (
         SELECT CASE WHEN m.sender_id = me.id THEN r.sender_id ELSE m.sender_id END AS other
         FROM messages m JOIN messages r ON r.chat_id = m.chat_id AND r.message_id = m.reply_to_message_id, me
         WHERE m.chat_id < 0 AND (m.sender_id = me.id) <> (r.sender_id = me.id)
       )
       SELECT other AS person_id, p.name, count(*)::int AS replies FROM pairs LEFT JOIN people p ON p.id = other
       WHERE other IS NOT NULL GROUP BY other, p.name ORDER BY replies DESC LIMIT $1`,
      [options.top ?? 10],
    ),
  ]);
  const ownerRow = owner.rows[0];
  const total = totals.rows[0];
  return {
    owner: ownerRow ? { id: Number(ownerRow.id), name: ownerRow.name } : null,
    chatsByType: byType.rows,
    messages: total?.messages ?? 0,
    people: total?.people ?? 0,
    firstMessageAt: total?.first ?? null,
    lastMessageAt: total?.last ?? null,
    topPartners: partners.rows.map((row) => ({
      chatId: Number(row.chat_id),
      name: row.name,
      messages: row.messages,
      ownerMessages: row.owner_messages,
    })),
    topRepliers: repliers.rows.map((row) => ({
      personId: Number(row.person_id),
      name: row.name,
      replies: row.replies,
    })),
  };
}
