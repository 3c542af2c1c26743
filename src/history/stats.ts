import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import type { ConversationPartner } from "./history-reads.ts";

export type HistoryStats = {
  owner: { id: number; name: string | null } | null;
  chatsByType: { type: string; chats: number; messages: number }[];
  messages: number;
  people: number;
  firstMessageAt: Date | null;
  lastMessageAt: Date | null;
  /** The owner's personal chats, busiest first. */
  topPartners: { chatId: number; name: string | null; messages: number; ownerMessages: number }[];
  /** The people the owner talks with most: in personal chats and in group sessions they share. */
  partners: ConversationPartner[];
};

/** What the store holds: chats by type, counts, date range and the owner's top conversation partners. */
export async function historyStats(
  { db }: { db: Db },
  options: { top?: number; partners: ConversationPartner[] },
): Promise<HistoryStats> {
  const [owner, byType, totals, partners] = await Promise.all([
    db.execute<{ id: string; name: string | null }>(sql`SELECT person_id AS id, name FROM owner LIMIT 1`),
    db.execute<{ type: string; chats: number; messages: number }>(
      sql`SELECT c.type, count(*)::int AS chats, coalesce(sum(m.n), 0)::int AS messages
       FROM chats c LEFT JOIN (SELECT chat_id, count(*) AS n FROM messages GROUP BY chat_id) m ON m.chat_id = c.id
       GROUP BY c.type ORDER BY messages DESC, c.type`,
    ),
    db.execute<{ messages: number; people: number; first: string | null; last: string | null }>(
      sql`SELECT (SELECT count(*) FROM messages)::int AS messages, (SELECT count(*) FROM people)::int AS people,
              (SELECT min(sent_at) FROM messages) AS first, (SELECT max(sent_at) FROM messages) AS last`,
    ),
    db.execute<{ chat_id: string; name: string | null; messages: number; owner_messages: number }>(
      sql`SELECT m.chat_id, coalesce(p.name, c.title) AS name, count(*)::int AS messages,
              count(*) FILTER (WHERE m.sender_id = (SELECT person_id FROM owner))::int AS owner_messages
       FROM messages m JOIN chats c ON c.id = m.chat_id LEFT JOIN people p ON p.id = m.chat_id
       WHERE c.type = 'personal_chat' AND m.kind <> 'service'
       GROUP BY m.chat_id, p.name, c.title ORDER BY messages DESC LIMIT ${options.top ?? 10}`,
    ),
  ]);
  const ownerRow = owner.rows[0];
  const total = totals.rows[0];
  return {
    owner: ownerRow ? { id: Number(ownerRow.id), name: ownerRow.name } : null,
    chatsByType: byType.rows,
    messages: total?.messages ?? 0,
    people: total?.people ?? 0,
    // drizzle returns timestamps as text
    firstMessageAt: total?.first ? new Date(total.first) : null,
    lastMessageAt: total?.last ? new Date(total.last) : null,
    topPartners: partners.rows.map((row) => ({
      chatId: Number(row.chat_id),
      name: row.name,
      messages: row.messages,
      ownerMessages: row.owner_messages,
    })),
    partners: options.partners,
  };
}
