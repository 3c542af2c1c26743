import { MAX_GENERATIONS } from "../inference/reply-shape.ts";
import type { ConversationRef, NoReply } from "./bot-messages.repository.ts";

/**
 * What the owner sees of conversations the model gave no reply (pure): a /status line naming
 * them, and a /log note after the message left unanswered. The replier records them
 * (BotMessagesRepository.storeNoReply); a later reply there clears them.
 */

const SHOWN = 5;

/** "No reply from the model: Dr_Willis, Anna (/talk) — /log <name>"; no line when there is none. */
export async function noReplyStatus(
  outcomes: NoReply[],
  nameOf: (personId: number) => Promise<string>,
): Promise<string[]> {
  if (outcomes.length === 0) return [];
  const names = await Promise.all(
    outcomes.slice(0, SHOWN).map(async (outcome) => {
      const where =
        outcome.mode === "talk" ? " (/talk)" : outcome.groupId !== undefined ? " (in a group)" : "";
      return `${await nameOf(outcome.personId)}${where}`;
    }),
  );
  const more = outcomes.length > SHOWN ? ` and ${outcomes.length - SHOWN} more` : "";
  return [`No reply from the model: ${names.join(", ")}${more} — /log <name>`];
}

const why = (outcome: NoReply) =>
  outcome.reason === "repeat"
    ? "it only repeated an earlier reply, resampled too"
    : `it said nothing, ${MAX_GENERATIONS} tries`;

/** The note /log puts after `messageId` when the model gave no reply to it in `ref`; "" otherwise. */
export function noReplyNote(outcomes: NoReply[], ref: ConversationRef, messageId: number): string {
  const silent = outcomes.find(
    (outcome) =>
      outcome.messageId === messageId &&
      outcome.personId === ref.personId &&
      outcome.mode === ref.mode &&
      outcome.groupId === ref.groupId,
  );
  return silent ? `  [no reply: ${why(silent)}]` : "";
}
