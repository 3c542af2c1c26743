import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { pullCursors } from "./userbot.tables.ts";

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
