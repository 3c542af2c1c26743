import type pg from "pg";
import { SESSION_GAP_MS } from "../../src/dataset/sessions.ts";
import type { RetrievalQuery } from "../../src/history/memory/retriever.ts";

export type Held = { query: RetrievalQuery; chatId: number; friendId: number };

/**
 * Held-out sessions, read back from the store as the bot would see them: a chat's messages cut at
 * the 10-minute session gap, consecutive messages of one sender merged into a turn. A session
 * qualifies when its last owner turn has 3 turns before it; the query is those 3 turns' messages,
 * and the session's own span is excluded (it is the live conversation, already in the prompt).
 */
export async function heldOutSessions(pool: pg.Pool, ownerId: number): Promise<Held[]> {
  const { rows: chatRows } = await pool.query<{ id: string; type: string }>(
    "SELECT id, type FROM chats ORDER BY id",
  );
  const found: Held[] = [];
  for (const chat of chatRows) {
    const chatId = Number(chat.id);
    const { rows } = await pool.query<{ sender_id: string | null; sent_at: Date; text: string }>(
      `SELECT sender_id, sent_at, text FROM messages
        WHERE chat_id = $1 AND kind <> 'service' ORDER BY sent_at, message_id`,
      [chatId],
    );
    let session: typeof rows = [];
    const close = () => {
      const turns: { sender: number; texts: string[] }[] = [];
      for (const row of session) {
        const sender = Number(row.sender_id);
        const last = turns.at(-1);
        const turn = last?.sender === sender ? last : { sender, texts: [] };
        if (turn !== last) turns.push(turn);
        if (row.text.trim()) turn.texts.push(row.text);
      }
      let lastOwner = turns.length - 1;
      while (lastOwner >= 0 && turns[lastOwner]?.sender !== ownerId) lastOwner--;
      if (lastOwner >= 3) {
        const context = turns.slice(lastOwner - 3, lastOwner);
        const text = context.flatMap((turn) => turn.texts);
        // A friend's scope: the private chat's other person; in a group, the member who spoke last.
        const speakers = context.map((turn) => turn.sender).filter((sender) => sender !== ownerId);
        const friendId = chat.type === "personal_chat" ? chatId : (speakers.at(-1) ?? Number.NaN);
        if (text.length > 0 && Number.isFinite(friendId))
          found.push({
            chatId,
            friendId,
            query: {
              text,
              scope: { kind: "all" },
              exclude: [{ chatId, from: session[0]?.sent_at as Date, to: session.at(-1)?.sent_at as Date }],
              limit: 3,
            },
          });
      }
      session = [];
    };
    for (const row of rows) {
      const previous = session.at(-1);
      if (previous && row.sent_at.getTime() - previous.sent_at.getTime() > SESSION_GAP_MS) close();
      session.push(row);
    }
    if (session.length > 0) close();
  }
  return found;
}
