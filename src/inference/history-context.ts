import {
  type DatasetMessageRow,
  datasetMessageColumns,
  datasetMessageFromRow,
} from "../dataset/dataset.repository.ts";
import { sanitizeName } from "../dataset/names.ts";
import { buildSessions } from "../dataset/sessions.ts";
import type { Database } from "../db/client.ts";
import type { PromptTurn } from "./prompt.ts";

/** Who talks in a conversation with the twin, and the real history between them. */
export type ConversationContext = {
  owner: { id: number; name: string };
  person: { id: number | undefined; name: string };
  timeZone: string;
  /** Real turns of their personal chat, oldest first (the latest sessions; the prompt trims). */
  history: PromptTurn[];
};

export class UnknownPersonError extends Error {}

const HISTORY_MESSAGES = 600;
const SESSION_GAP_MS = 10 * 60_000;

/** The owner, the person called `name` (by their latest name, case-insensitively) and their chat. */
export async function loadConversationContext(
  { pool }: Pick<Database, "pool">,
  name: string,
  fallbackTimeZone: string,
): Promise<ConversationContext> {
  const owner = await pool.query<{ person_id: string; name: string | null; time_zone: string }>(
    "SELECT person_id, name, time_zone FROM owner",
  );
  const ownerRow = owner.rows[0];
  if (!ownerRow) throw new UnknownPersonError("nothing imported yet: run `twin import <export>` first");
  const ownerId = Number(ownerRow.person_id);
  const found = await pool.query<{ id: string; name: string | null; messages: number }>(
    `SELECT p.id, p.name, (SELECT count(*) FROM messages m WHERE m.chat_id = p.id)::int AS messages
     FROM people p WHERE lower(p.name) = lower($1) AND p.id <> $2 ORDER BY messages DESC LIMIT 1`,
    [name.trim(), ownerId],
  );
  const person = found.rows[0];
  const context: ConversationContext = {
    owner: { id: ownerId, name: sanitizeName(ownerRow.name, ownerId) },
    person: {
      id: person ? Number(person.id) : undefined,
      name: person ? sanitizeName(person.name, Number(person.id)) : name.trim(),
    },
    timeZone: ownerRow.time_zone ?? fallbackTimeZone,
    history: [],
  };
  if (!person) return context; // someone the history does not know: no context, still a conversation
  const { rows } = await pool.query<DatasetMessageRow>(
    `SELECT ${datasetMessageColumns}
     FROM messages WHERE chat_id = $1 AND kind <> 'service'
       AND EXISTS (SELECT 1 FROM chats c WHERE c.id = $1 AND c.type = 'personal_chat')
     ORDER BY sent_at DESC, message_id DESC LIMIT $2`,
    [person.id, HISTORY_MESSAGES],
  );
  const messages = rows.reverse().map(datasetMessageFromRow);
  const names = new Map([
    [ownerId, context.owner.name],
    [Number(person.id), context.person.name],
  ]);
  context.history = buildSessions(messages, { gapMs: SESSION_GAP_MS, media: "tag" })
    .flatMap((session) => session.turns)
    .filter((turn) => names.has(turn.speakerId))
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  return context;
}
