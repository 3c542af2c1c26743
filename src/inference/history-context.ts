import type { ChatInfo } from "../dataset/examples.ts";
import { RECENT_MESSAGES } from "../dataset/memory-turn.ts";
import { buildNameTable, sanitizeName } from "../dataset/names.ts";
import { buildSessions, type Session } from "../dataset/sessions.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import type { ExcludedSpan } from "../history/memory/retriever.ts";
import { UnknownPersonError } from "./inference.errors.ts";
import type { PromptTurn } from "./prompt.ts";

/** Who talks in a conversation with the twin, and the real history between them. */
export type ConversationContext = {
  owner: { id: number; name: string };
  person: { id: number | undefined; name: string };
  /** Real turns of their personal chat, oldest first (the latest sessions; the prompt trims). */
  history: PromptTurn[];
  /** Where those sessions lie (chat, first and last message): memory never recalls them again. */
  spans: ExcludedSpan[];
  /** The names the prompt gives people, by person id. */
  names: ReadonlyMap<number, string>;
};

type History = Pick<
  HistoryRepository,
  "getOwner" | "personName" | "latestMessages" | "sharedGroupSessions" | "chat" | "names"
>;

/** The recent history a prompt shows, which memory never recalls again (a memory dataset excludes it alike). */
const HISTORY_MESSAGES = RECENT_MESSAGES;

/** Where sessions lie in their chats (pure). */
function spansOf(sessions: Session[]): ExcludedSpan[] {
  return sessions.map((s) => ({ chatId: s.chatId, from: new Date(s.startedAt), to: new Date(s.endedAt) }));
}

/**
 * The owner, the person with this Telegram user id and their chat, cut into sessions at `gapMs`
 * (the conversation's settings: conversation-context.ts); `fallbackName` names someone the history
 * does not know (a friend's Telegram name).
 */
export async function loadConversationContext(
  history: History,
  personId: number | undefined,
  fallbackName: string,
  gapMs: number,
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
    history: [],
    spans: [],
    names: new Map([[owner.id, owner.name]]),
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
          gapMinutes: gapMs / 60_000,
        });
  const names = new Map([
    [owner.id, context.owner.name],
    [personId, context.person.name],
  ]);
  const sessions = chunks.flatMap((messages) =>
    buildSessions(messages, { gapMs, media: "tag", nameOf: (id) => names.get(id) }),
  );
  context.spans = spansOf(sessions);
  context.names = names;
  context.history = sessions
    .flatMap((session) => session.turns)
    .filter((turn) => names.has(turn.speakerId))
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  return context;
}

type Owner = { id: number; name: string };

async function loadOwner(history: Pick<HistoryRepository, "getOwner">): Promise<Owner> {
  const row = await history.getOwner();
  if (!row) throw new UnknownPersonError("nothing imported yet: run `twin import <export>` first");
  return { id: row.personId, name: sanitizeName(row.name, row.personId) };
}

/** A group conversation's context: the group and its real history, if it was imported. */
export type GroupContext = {
  owner: { id: number; name: string };
  person: { id: number; name: string };
  chat: ChatInfo;
  /** Everyone whose name the prompt shows, the owner and the person first. */
  participants: string[];
  /** Real turns of the group (every speaker), oldest first; none for a group the history lacks. */
  history: PromptTurn[];
  /** Where those sessions lie (chat, first and last message): memory never recalls them again. */
  spans: ExcludedSpan[];
  /** The names the prompt gives people, by person id. */
  names: ReadonlyMap<number, string>;
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
  gapMs: number,
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
  const sessions = buildSessions(messages, { gapMs, media: "tag", nameOf: (id) => names.get(id) });
  const turns = sessions
    .flatMap((session) => session.turns)
    .map((turn) => ({ speaker: names.get(turn.speakerId) as string, messages: turn.messages }));
  const participants = [...new Set([owner.id, person.id, ...speakers])].map((id) => names.get(id) as string);
  return {
    owner: { id: owner.id, name: names.get(owner.id) as string },
    person: { id: person.id, name: names.get(person.id) as string },
    chat: { id: group.id, type: chat?.type ?? "private_group", title: chat?.title ?? group.title },
    participants,
    history: turns,
    spans: spansOf(sessions),
    names,
  };
}
