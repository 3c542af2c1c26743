import { ownerTimeZone } from "../config/config.ts";
import type { ChatInfo } from "../dataset/examples.ts";
import { buildNameTable, sanitizeName } from "../dataset/names.ts";
import { buildSessions, SESSION_GAP_MINUTES, SESSION_GAP_MS } from "../dataset/sessions.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import { UnknownPersonError } from "./inference.errors.ts";
import type { PromptTurn } from "./prompt.ts";

/** Who talks in a conversation with the twin, and the real history between them. */
export type ConversationContext = {
  owner: { id: number; name: string };
  person: { id: number | undefined; name: string };
  timeZone: string;
  /** Real turns of their personal chat, oldest first (the latest sessions; the prompt trims). */
  history: PromptTurn[];
};

type History = Pick<
  HistoryRepository,
  "getOwner" | "personName" | "latestMessages" | "sharedGroupSessions" | "chat" | "names"
>;

const HISTORY_MESSAGES = 600;

/**
 * The owner, the person with this Telegram user id and their chat; `fallbackName` names someone
 * the history does not know (a friend's Telegram name).
 */
export async function loadConversationContext(
  history: History,
  personId: number | undefined,
  fallbackName: string,
  configuredTimeZone: string | undefined,
): Promise<ConversationContext> {
  const owner = await loadOwner(history);
  const storedName = personId === undefined ? null : await history.personName(personId);
  const context: ConversationContext = {
    owner: { id: owner.id, name: owner.name },
    person: {
      id: personId,
      name: storedName
        ? sanitizeName(storedName, personId as number)
        : sanitizeName(fallbackName, personId ?? 0),
    },
    timeZone: ownerTimeZone(configuredTimeZone, owner.timeZone),
    history: [],
  };
  if (personId === undefined) return context; // someone the history does not know: no context, still a conversation
  const personal = await history.latestMessages(personId, HISTORY_MESSAGES, { personalOnly: true });
  // Two people who never had a personal chat (an IRC log) still have the group sessions they shared;
  // the two of them are kept, and a session is never merged with another chat's.
  const chunks =
    personal.length > 0
      ? [personal]
      : await history.sharedGroupSessions({
          ownerId: owner.id,
          personId,
          limit: HISTORY_MESSAGES,
          gapMinutes: SESSION_GAP_MINUTES,
        });
  const names = new Map([
    [owner.id, context.owner.name],
    [personId, context.person.name],
  ]);
  context.history = chunks
    .flatMap((messages) =>
      buildSessions(messages, { gapMs: SESSION_GAP_MS, media: "tag", nameOf: (id) => names.get(id) }),
    )
    .flatMap((session) => session.turns)
    .filter((turn) => names.has(turn.speakerId))
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  return context;
}

type Owner = { id: number; name: string; timeZone: string | null };

async function loadOwner(history: Pick<HistoryRepository, "getOwner">): Promise<Owner> {
  const row = await history.getOwner();
  if (!row) throw new UnknownPersonError("nothing imported yet: run `twin import <export>` first");
  return { id: row.personId, name: sanitizeName(row.name, row.personId), timeZone: row.timeZone };
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
  history: History,
  group: { id: number; title: string | null },
  person: { id: number; fallbackName: string },
  configuredTimeZone: string | undefined,
): Promise<GroupContext> {
  const owner = await loadOwner(history);
  const chat = await history.chat(group.id);
  const messages = await history.latestMessages(group.id, HISTORY_MESSAGES);
  const speakers = new Set<number>([owner.id, person.id]);
  for (const message of messages) if (message.senderId !== null) speakers.add(message.senderId);
  const known = await history.names([...speakers]);
  known.set(owner.id, owner.name);
  if (!known.get(person.id)) known.set(person.id, person.fallbackName);
  const names = buildNameTable(
    [...speakers].map((id) => ({ id, name: known.get(id) ?? null })),
    new Map(),
    owner.id,
  );
  const turns = buildSessions(messages, {
    gapMs: SESSION_GAP_MS,
    media: "tag",
    nameOf: (id) => names.get(id),
  })
    .flatMap((session) => session.turns)
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  const participants = [...new Set([owner.id, person.id, ...speakers])].map((id) => names.get(id) as string);
  return {
    owner: { id: owner.id, name: names.get(owner.id) as string },
    person: { id: person.id, name: names.get(person.id) as string },
    chat: { id: group.id, type: chat?.type ?? "private_group", title: chat?.title ?? group.title },
    timeZone: ownerTimeZone(configuredTimeZone, owner.timeZone),
    participants,
    history: turns,
  };
}
