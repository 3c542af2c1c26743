import { sql } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { hitFilter, scopeChats } from "./postgres-retriever.ts";
import type { ExcludedSpan, MemoryScope } from "./retriever.ts";

/**
 * Whether `senderId` wrote, before `before` and within `scope` (outside `exclude`), any content word
 * of `text`: its lexemes in the configuration of `chatId`, whose stop words that configuration drops.
 * This is what "knows the context" means for a held-out turn (`twin eval --compare-memory`): the
 * words were there to be recalled.
 */
export type SaidBeforeQuery = {
  senderId: number;
  text: string;
  chatId: number;
  scope: MemoryScope;
  before: Date;
  exclude: ExcludedSpan[];
};

export async function saidBefore(db: Db, query: SaidBeforeQuery): Promise<boolean> {
  const chats = await scopeChats(db, query.scope);
  const filter = hitFilter(chats, query.exclude, query.before);
  // Any of the words, not all of them: plainto_tsquery joins them with &, which becomes |.
  const { rows } = await db.execute<{ said: boolean }>(sql`
    WITH q AS (
      SELECT replace(plainto_tsquery(coalesce(
               (SELECT config FROM message_search WHERE chat_id = ${query.chatId} LIMIT 1), 'simple'::regconfig),
             ${query.text})::text, '&', '|') AS words)
    SELECT EXISTS (
      SELECT 1 FROM message_search s, q
      WHERE q.words <> '' AND s.sender_id = ${query.senderId} AND ${filter}
        AND s.document @@ q.words::tsquery) AS said`);
  return rows[0]?.said === true;
}
