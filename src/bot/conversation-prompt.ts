import { forwardMarker } from "../dataset/markers.ts";
import { SESSION_GAP_MS } from "../dataset/sessions.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import type { ExcludedSpan, MemoryScope, Retriever } from "../history/memory/retriever.ts";
import { buildConversationContext, type ContextSettings } from "../inference/conversation-context.ts";
import { loadConversationContext, loadGroupContext } from "../inference/history-context.ts";
import type { Prompt, PromptTurn } from "../inference/prompt.ts";
import { RECENT_REPLIES } from "../inference/reply-shape.ts";
import type { BotMessagesRepository, ConversationRef, StoredMessage } from "./bot-messages.repository.ts";

const STORED_MESSAGES = 400;
/** What every forward marker starts with: `[forwarded from `. */
const FORWARD_PREFIX = forwardMarker("x").replace(/x\]$/u, "");

/**
 * The bot's stored conversation as prompt turns (pure): sessions cut at SESSION_GAP_MS as the
 * dataset cuts them; the last session is live (its start goes into the header), earlier ones
 * follow the real history as context. Consecutive messages of one side merge into one turn; a
 * message's marker (a forward's, a reply's) is its own line before the text, and a run of forwards
 * from one author shows its marker once, as the dataset renders history (src/dataset/sessions.ts).
 */
export function conversationTurns(
  stored: StoredMessage[],
  names: { person: string; twin: string },
  gapMs = SESSION_GAP_MS,
): { earlier: PromptTurn[]; live: PromptTurn[]; liveStartedAt: number | undefined } {
  let liveStart = 0;
  for (let i = 1; i < stored.length; i++) {
    const gap =
      (stored[i] as StoredMessage).sentAt.getTime() - (stored[i - 1] as StoredMessage).sentAt.getTime();
    if (gap > gapMs) liveStart = i;
  }
  const toTurns = (messages: StoredMessage[]) => {
    const turns: PromptTurn[] = [];
    let forwardRun: string | undefined; // the forward marker the current turn's last lines follow
    for (const message of messages) {
      const speaker = message.fromTwin ? names.twin : names.person;
      let turn = turns.at(-1);
      if (turn?.speaker !== speaker) {
        turn = { speaker, messages: [] };
        turns.push(turn);
        forwardRun = undefined;
      }
      const marker = message.marker ?? undefined;
      if (marker !== undefined && marker !== forwardRun) turn.messages.push(marker);
      forwardRun = marker?.startsWith(FORWARD_PREFIX) ? marker : undefined;
      turn.messages.push(message.text);
    }
    return turns;
  };
  return {
    earlier: toTurns(stored.slice(0, liveStart)),
    live: toTurns(stored.slice(liveStart)),
    liveStartedAt: stored[liveStart]?.sentAt.getTime(),
  };
}

/**
 * The Telegram ids of the twin's messages in the turn before a person's message that comes `at`
 * (pure): the twin's latest run of sent messages, before the person's own latest run (the turn this
 * message joins), in the same session. A reply to one of these gets no marker (incoming-text.ts).
 * `stored` is the conversation as the twin saw it, oldest first (`recent`).
 */
export function previousTurn(stored: StoredMessage[], at: number, gapMs = SESSION_GAP_MS): Set<number> {
  const ids = new Set<number>();
  let later = at;
  let i = stored.length - 1;
  const sameSession = (message: StoredMessage) => {
    const fits = later - message.sentAt.getTime() <= gapMs;
    later = message.sentAt.getTime();
    return fits;
  };
  for (; i >= 0 && !(stored[i] as StoredMessage).fromTwin; i--) {
    if (!sameSession(stored[i] as StoredMessage)) return ids;
  }
  for (; i >= 0 && (stored[i] as StoredMessage).fromTwin; i--) {
    const message = stored[i] as StoredMessage;
    if (!sameSession(message)) break;
    if (message.telegramMessageId != null) ids.add(message.telegramMessageId);
  }
  return ids;
}

export type PromptDeps = {
  history: HistoryRepository;
  messages: BotMessagesRepository;
  countTokens: (text: string) => number;
  /** Memory (history/memory/); without it, prompts recall nothing. */
  retriever?: Retriever | undefined;
  /** The gap, zone, budget and memory settings (conversation-context.ts), for the latest dataset. */
  settings: ContextSettings;
};

/**
 * The prompt for the twin's next turn in a bot conversation, and the twin's latest replies there. Mode `friend`: the friend talks, the
 * twin answers as the owner. Mode `talk`: the owner talks, the twin answers as the friend. Either
 * way: header, what memory recalls (when on), the real history between the two, the bot's earlier
 * sessions, the live one (conversation-context.ts puts them together). In a group the real history
 * is that group's, never the private chat's, and so is what memory recalls.
 */
export async function conversationPrompt(
  deps: PromptDeps,
  ref: ConversationRef,
  fallbackName: string,
  groupTitle: string | null = null,
): Promise<{ prompt: Prompt; replyAs: string; recentReplies: string[] }> {
  const { settings } = deps;
  const context =
    ref.groupId === undefined
      ? await privateContext(deps, ref, fallbackName)
      : await loadGroupContext(
          deps.history,
          { id: ref.groupId, title: groupTitle },
          { id: ref.personId, fallbackName },
          settings.gapMs,
        );
  const names =
    ref.mode === "friend"
      ? { person: context.person.name, twin: context.owner.name }
      : { person: context.owner.name, twin: context.person.name };
  const stored = await deps.messages.recent(ref, STORED_MESSAGES);
  const { earlier, live, liveStartedAt } = conversationTurns(stored, names, settings.gapMs);
  const { prompt } = await buildConversationContext(
    { retriever: deps.retriever, countTokens: deps.countTokens },
    settings,
    {
      header: {
        chat: context.chat,
        participants: context.participants,
        startedAt: liveStartedAt ?? Date.now(),
      },
      recent: [...context.history, ...earlier],
      recentSpans: [...context.spans, ...storedSpan(ref, stored)],
      live,
      replyAs: names.twin,
      scope: memoryScope(ref),
      names: context.names,
    },
  );
  return { prompt, replyAs: names.twin, recentReplies: twinReplies(stored).slice(-RECENT_REPLIES) };
}

/**
 * Whose history memory may draw on (pure): a group's conversation, that group only (checked first:
 * nothing else is ever shown to a group); in /talk the owner's own history, all of it; a friend's
 * private conversation, the chats the friend took part in.
 */
export function memoryScope(ref: ConversationRef): MemoryScope {
  if (ref.groupId !== undefined) return { kind: "group", chatId: ref.groupId };
  return ref.mode === "talk" ? { kind: "all" } : { kind: "friend", personId: ref.personId };
}

/** The real chat the bot's stored conversation belongs to, from its first message to its last (pure). */
export function storedSpan(ref: ConversationRef, stored: StoredMessage[]): ExcludedSpan[] {
  const first = stored[0];
  const last = stored.at(-1);
  if (!first || !last) return [];
  return [{ chatId: ref.groupId ?? ref.personId, from: first.sentAt, to: last.sentAt }];
}

/** The twin's replies in stored messages (pure), oldest first: each run of its messages as one text. */
export function twinReplies(stored: StoredMessage[]): string[] {
  const replies: string[] = [];
  stored.forEach((message, index) => {
    if (!message.fromTwin) return;
    if (index > 0 && stored[index - 1]?.fromTwin) replies[replies.length - 1] += `\n${message.text}`;
    else replies.push(message.text);
  });
  return replies;
}

async function privateContext(deps: PromptDeps, ref: ConversationRef, fallbackName: string) {
  const context = await loadConversationContext(
    deps.history,
    ref.personId,
    fallbackName,
    deps.settings.gapMs,
  );
  return {
    ...context,
    chat: { id: ref.personId, type: "personal_chat", title: null },
    participants: [context.person.name, context.owner.name],
  };
}
