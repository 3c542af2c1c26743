import { eq, sql } from "drizzle-orm";
import type { Db, Transaction } from "../db/client.ts";
import { pullCursors } from "./userbot.tables.ts";

/** Moves a chat's cursor forward (never back), in the transaction that stored its messages. */
export function saveCursor(chatId: number, lastMessageId: number) {
  return async (transaction: Transaction): Promise<void> => {
    await transaction
      .insert(pullCursors)
      .values({ chatId, lastMessageId })
      .onConflictDoUpdate({
        target: pullCursors.chatId,
        set: {
          lastMessageId: sql`greatest(${pullCursors.lastMessageId}, excluded.last_message_id)`,
          updatedAt: sql`now()`,
        },
      });
  };
}

/** The newest message id pulled for a chat (0: nothing yet). */
export function pullCursorReader(db: Db) {
  return async (chatId: number): Promise<number> => {
    const rows = await db
      .select({ id: pullCursors.lastMessageId })
      .from(pullCursors)
      .where(eq(pullCursors.chatId, chatId));
    return rows[0]?.id ?? 0;
  };
}
