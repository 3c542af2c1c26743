import { headerLine } from "../dataset/examples.ts";
import type { Database } from "../db/client.ts";
import { loadConversationContextFor, loadGroupContext } from "../inference/history-context.ts";
import { buildPrompt, type Prompt, type PromptTurn } from "../inference/prompt.ts";
import type { BotMessagesRepository, ConversationRef, StoredMessage } from "./bot-messages.repository.ts";

const SESSION_GAP_MS = 10 * 60_000;
const STORED_MESSAGES = 400;

/**
 * The bot's stored conversation as prompt turns (pure): sessions cut at 10-minute gaps as the
 * dataset cuts them; the last session is live (its start goes into the header), earlier ones
 * follow the real history as context. Consecutive messages of one side merge into one turn.
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
    for (const message of messages) {
      const speaker = message.fromTwin ? names.twin : names.person;
      const last = turns.at(-1);
      if (last?.speaker === speaker) last.messages.push(message.text);
      else turns.push({ speaker, messages: [message.text] });
    }
    return turns;
  };
  return {
    earlier: toTurns(stored.slice(0, liveStart)),
    live: toTurns(stored.slice(liveStart)),
    liveStartedAt: stored[liveStart]?.sentAt.getTime(),
  };
}

export type PromptDeps = {
  database: Pick<Database, "pool">;
  messages: BotMessagesRepository;
  countTokens: (text: string) => number;
  contextSize: number;
  maxReplyTokens: number;
  timeZone: string;
};

/**
 * The prompt for the twin's next turn in a bot conversation. Mode `friend`: the friend talks, the
 * twin answers as the owner. Mode `talk`: the owner talks, the twin answers as the friend. Either
 * way: header, the real history between the two, the bot's earlier sessions, the live one. In a
 * group the real history is that group's, never the private chat's.
 */
export async function conversationPrompt(
  deps: PromptDeps,
  ref: ConversationRef,
  fallbackName: string,
  groupTitle: string | null = null,
): Promise<{ prompt: Prompt; replyAs: string }> {
  const context =
    ref.groupId === undefined
      ? await privateContext(deps, ref, fallbackName)
      : await loadGroupContext(
          deps.database,
          { id: ref.groupId, title: groupTitle },
          { id: ref.personId, fallbackName },
          deps.timeZone,
        );
  const names =
    ref.mode === "friend"
      ? { person: context.person.name, twin: context.owner.name }
      : { person: context.owner.name, twin: context.person.name };
  const stored = await deps.messages.recent(ref, STORED_MESSAGES);
  const { earlier, live, liveStartedAt } = conversationTurns(stored, names);
  const prompt = buildPrompt({
    header: headerLine(context.chat, context.participants, liveStartedAt ?? Date.now(), context.timeZone),
    history: [...context.history, ...earlier],
    live,
    replyAs: names.twin,
    maxTokens: deps.contextSize - deps.maxReplyTokens,
    countTokens: deps.countTokens,
  });
  return { prompt, replyAs: names.twin };
}

async function privateContext(deps: PromptDeps, ref: ConversationRef, fallbackName: string) {
  const context = await loadConversationContextFor(deps.database, ref.personId, fallbackName, deps.timeZone);
  return {
    ...context,
    chat: { id: ref.personId, type: "personal_chat", title: null },
    participants: [context.person.name, context.owner.name],
  };
}
