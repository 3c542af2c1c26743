import { sql } from "drizzle-orm";
import type { Db } from "../../db/client.ts";

/**
 * A leakage canary in the history store, where memory searches, for the length of an evaluation
 * (`twin eval` with memory on): the owner "says" a made-up secret a few times in one chat, then
 * other chats ask for it. The rows are marked (`details.canary`, ids far below any Telegram id) and
 * removed afterwards; deleting them deletes their index rows too (the trigger of migration 0015).
 */

/** Planted rows take ids from here down: Telegram's message ids are positive. */
const CANARY_IDS_FROM = -9_000_000_000;

/** What was planted; `firstAt`: the earliest planted message (a probe from before it cannot recall any). */
export type PlantedCanary = { chatId: number; messageIds: number[]; firstAt: Date | undefined };

/**
 * Adds `sentence` as a message of the owner right after `times` of the owner's text messages,
 * spread over the older half of the chat (as dataset/canary.ts plants it in a dataset), a
 * millisecond later so it stays in that session.
 */
export async function plantCanary(
  db: Db,
  input: { chatId: number; ownerId: number; sentence: string; times?: number },
): Promise<PlantedCanary> {
  // Rows a killed evaluation left behind go first: the history holds one canary at most.
  await db.execute(sql`DELETE FROM messages WHERE message_id <= ${CANARY_IDS_FROM} AND details ? 'canary'`);
  const { rows } = await db.execute<{ sent_at: string | Date; sender_name: string | null }>(sql`
    SELECT sent_at, sender_name FROM messages
    WHERE chat_id = ${input.chatId} AND sender_id = ${input.ownerId} AND kind = 'text' AND text <> ''
      AND message_id > 0
    ORDER BY sent_at, message_id`);
  const older = rows.slice(0, Math.floor(rows.length / 2));
  const count = Math.min(input.times ?? 3, older.length);
  const after = Array.from(
    { length: count },
    (_, i) => older[Math.floor(((i + 0.5) * older.length) / count)],
  );
  const messageIds: number[] = [];
  let firstAt: Date | undefined;
  for (const [index, row] of after.entries()) {
    if (!row) continue;
    const messageId = CANARY_IDS_FROM - index;
    await db.execute(sql`
      INSERT INTO messages (chat_id, message_id, sender_id, sender_name, sent_at, kind, text, source, details)
      VALUES (${input.chatId}, ${messageId}, ${input.ownerId}, ${row.sender_name},
              ${new Date(row.sent_at).toISOString()}::timestamptz + interval '1 millisecond', 'text',
              ${input.sentence}, 'desktop_export', '{"canary": true}'::jsonb)
      ON CONFLICT (chat_id, message_id) DO UPDATE SET text = EXCLUDED.text`);
    messageIds.push(messageId);
    firstAt ??= new Date(row.sent_at);
  }
  return { chatId: input.chatId, messageIds, firstAt };
}

/** Removes what plantCanary added (and so its index rows). */
export async function removeCanary(db: Db, planted: PlantedCanary): Promise<void> {
  if (planted.messageIds.length === 0) return;
  await db.execute(sql`
    DELETE FROM messages WHERE chat_id = ${planted.chatId}
      AND message_id = ANY(${`{${planted.messageIds.join(",")}}`}::bigint[]) AND details ? 'canary'`);
}
