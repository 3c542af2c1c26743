import type { Message } from "grammy/types";
import { sanitizeName } from "../dataset/names.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import type { BotMessagesRepository, ConversationRef } from "./bot-messages.repository.ts";
import { previousTurn } from "./conversation-prompt.ts";
import { incomingMarker } from "./incoming-text.ts";
import { displayName } from "./people.ts";

/** How many stored messages are searched for the twin's previous turn (a person's burst comes after it). */
const TURN_SEARCH = 200;

export type LiveMarkerDeps = { history: HistoryRepository; messages: BotMessagesRepository; ownerId: number };

/**
 * The marker line a person's live message gets in conversation `ref` (incoming-text.ts), with what
 * it needs read from the store: the names the prompt gives the owner and the person (the bot's own
 * messages are the twin's: the owner's with a friend, the simulated friend's in /talk) and, for a
 * reply, the twin's previous turn. A message that is neither a forward nor a reply costs no query.
 */
export async function liveMarker(
  deps: LiveMarkerDeps,
  message: Message,
  ref: ConversationRef,
  { botId, personName }: { botId: number; personName: string },
): Promise<string | null> {
  if (!message.forward_origin && !message.reply_to_message && !message.external_reply) return null;
  const owner = await deps.history.getOwner();
  // As the prompt names them (history-context.ts): the owner's stored name, the person's stored or Telegram one.
  const ownerName = sanitizeName(owner?.name ?? null, owner?.personId ?? deps.ownerId);
  const person = await displayName(deps.history, ref.personId, personName);
  const names = new Map([
    [deps.ownerId, ownerName],
    [ref.personId, person],
    [botId, ref.mode === "friend" ? ownerName : person],
  ]);
  const turn =
    message.reply_to_message && !message.forward_origin
      ? previousTurn(await deps.messages.recent(ref, TURN_SEARCH), Date.now())
      : new Set<number>();
  return incomingMarker(message, { names, previousTurn: turn });
}
