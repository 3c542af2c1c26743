import {
  type DatasetMessageRow,
  datasetMessageColumns,
  datasetMessageFromRow,
} from "../dataset/dataset.repository.ts";
import type { ChatInfo } from "../dataset/examples.ts";
import { buildNameTable, sanitizeName } from "../dataset/names.ts";
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
  database: Pick<Database, "pool">,
  name: string,
  fallbackTimeZone: string,
): Promise<ConversationContext> {
  const owner = await loadOwner(database);
  const found = await database.pool.query<{ id: string }>(
    `SELECT p.id, (SELECT count(*) FROM messages m WHERE m.chat_id = p.id)::int AS messages
     FROM people p WHERE lower(p.name) = lower($1) AND p.id <> $2 ORDER BY messages DESC LIMIT 1`,
    [name.trim(), owner.id],
  );
  const id = found.rows[0] ? Number(found.rows[0].id) : undefined;
  return withHistory(database, owner, id, name.trim(), fallbackTimeZone);
}

/**
 * The owner, the person with this Telegram user id and their chat; `fallbackName` names someone
 * the history does not know (a friend's Telegram name).
 */
export async function loadConversationContextFor(
  database: Pick<Database, "pool">,
  personId: number,
  fallbackName: string,
  fallbackTimeZone: string,
): Promise<ConversationContext> {
  const owner = await loadOwner(database);
  return withHistory(database, owner, personId, fallbackName, fallbackTimeZone);
}

type Owner = { id: number; name: string; timeZone: string | null };

async function loadOwner({ pool }: Pick<Database, "pool">): Promise<Owner> {
  const owner = await pool.query<{ person_id: string; name: string | null; time_zone: string | null }>(
    "SELECT person_id, name, time_zone FROM owner",
  );
  const row = owner.rows[0];
  if (!row) throw new UnknownPersonError("nothing imported yet: run `twin import <export>` first");
  const id = Number(row.person_id);
  return { id, name: sanitizeName(row.name, id), timeZone: row.time_zone };
}

async function withHistory(
  { pool }: Pick<Database, "pool">,
  owner: Owner,
  personId: number | undefined,
  fallbackName: string,
  fallbackTimeZone: string,
): Promise<ConversationContext> {
  const person =
    personId === undefined
      ? undefined
      : (await pool.query<{ name: string | null }>("SELECT name FROM people WHERE id = $1", [personId]))
          .rows[0];
  const context: ConversationContext = {
    owner: { id: owner.id, name: owner.name },
    person: {
      id: personId,
      name: person?.name
        ? sanitizeName(person.name, personId as number)
        : sanitizeName(fallbackName, personId ?? 0),
    },
    timeZone: owner.timeZone ?? fallbackTimeZone,
    history: [],
  };
  if (personId === undefined) return context; // someone the history does not know: no context, still a conversation
  const { rows } = await pool.query<DatasetMessageRow>(
    `SELECT ${datasetMessageColumns}
     FROM messages WHERE chat_id = $1 AND kind <> 'service'
       AND EXISTS (SELECT 1 FROM chats c WHERE c.id = $1 AND c.type = 'personal_chat')
     ORDER BY sent_at DESC, message_id DESC LIMIT $2`,
    [personId, HISTORY_MESSAGES],
  );
  const messages = rows.reverse().map(datasetMessageFromRow);
  const names = new Map([
    [owner.id, context.owner.name],
    [personId, context.person.name],
  ]);
  context.history = buildSessions(messages, { gapMs: SESSION_GAP_MS, media: "tag" })
    .flatMap((session) => session.turns)
    .filter((turn) => names.has(turn.speakerId))
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  return context;
}

/** A group conversation's context: the group and its real history, if it was imported. */
export type GroupContext = {
  owner: { id: number; name: string };
  person: { id: number; name: string };
  chat: ChatInfo;
  timeZone: string;
  /** Everyone whose name the prompt shows, the owner and the person first. */
  participants: string[];
  /** Real turns of the group (every speaker), oldest first; none for a group the history lacks. */
  history: PromptTurn[];
};

/**
 * The context of a friend's conversation with the twin in a group: that group's own imported
 * history and nothing else. A private chat's content never enters it, so nothing said in private
 * is shown to a group.
 */
export async function loadGroupContext(
  { pool }: Pick<Database, "pool">,
  group: { id: number; title: string | null },
  person: { id: number; fallbackName: string },
  fallbackTimeZone: string,
): Promise<GroupContext> {
  const owner = await loadOwner({ pool });
  const chat = (
    await pool.query<{ type: string; title: string | null }>("SELECT type, title FROM chats WHERE id = $1", [
      group.id,
    ])
  ).rows[0];
  const { rows } = await pool.query<DatasetMessageRow>(
    `SELECT ${datasetMessageColumns}
     FROM messages WHERE chat_id = $1 AND kind <> 'service'
     ORDER BY sent_at DESC, message_id DESC LIMIT $2`,
    [group.id, HISTORY_MESSAGES],
  );
  const messages = rows.reverse().map(datasetMessageFromRow);
  const speakers = new Set<number>([owner.id, person.id]);
  for (const message of messages) if (message.senderId !== null) speakers.add(message.senderId);
  const people = await pool.query<{ id: string; name: string | null }>(
    "SELECT id, name FROM people WHERE id = ANY($1::bigint[])",
    [[...speakers]],
  );
  const known = new Map(people.rows.map((row) => [Number(row.id), row.name]));
  known.set(owner.id, owner.name);
  if (!known.get(person.id)) known.set(person.id, person.fallbackName);
  const names = buildNameTable(
    [...speakers].map((id) => ({ id, name: known.get(id) ?? null })),
    new Map(),
    owner.id,
  );
  const history = buildSessions(messages, { gapMs: SESSION_GAP_MS, media: "tag" })
    .flatMap((session) => session.turns)
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  const participants = [...new Set([owner.id, person.id, ...speakers])].map((id) => names.get(id) as string);
  return {
    owner: { id: owner.id, name: names.get(owner.id) as string },
    person: { id: person.id, name: names.get(person.id) as string },
    chat: { id: group.id, type: chat?.type ?? "private_group", title: chat?.title ?? group.title },
    timeZone: owner.timeZone ?? fallbackTimeZone,
    participants,
    history,
  };
}
