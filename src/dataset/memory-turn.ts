import type { RecalledWindow } from "../history/memory/retriever.ts";
import { MESSAGE_PREFIX } from "./chatml.ts";
import { headerLine } from "./examples.ts";
import { sanitizeName } from "./names.ts";

/**
 * The text of the memory turn (pure): past exchanges recalled for a conversation, shown to the model
 * as one untrained system turn between the header and the recent history. The dataset owns it, as it
 * owns every part of the format, so training and inference render recalled windows alike.
 *
 * One block per window, oldest first, blocks apart by a blank line; a block opens with the header
 * line of that chat at its first message (the owner's local time, as the header shows it), then one
 * line per message, its sender's name before the `>>> ` a turn's messages have:
 *
 *   Earlier · Telegram chat · Alice, Bob · 2023-11-27 Mon 21:15
 *   Alice: >>> are you coming on friday?
 *   Bob: >>> yes, with the cake
 *
 * The text is not escaped: whoever renders the turn escapes it as it escapes the header (chatml.ts).
 */
export function memoryTurnText(
  windows: readonly RecalledWindow[],
  options: {
    timeZone: string;
    /** The name a sender has in the prompt (its name table); otherwise the stored name, sanitized. */
    nameOf?: ((senderId: number) => string | undefined) | undefined;
  },
): string {
  const nameOf = (message: RecalledWindow["messages"][number]) =>
    (message.senderId === null ? undefined : options.nameOf?.(message.senderId)) ??
    sanitizeName(message.senderName, message.senderId ?? 0);
  return windows
    .filter((window) => window.messages.length > 0)
    .map((window) => ({ window, startedAt: Math.min(...window.messages.map((m) => m.sentAt.getTime())) }))
    .sort((a, b) => a.startedAt - b.startedAt)
    .map(({ window, startedAt }) => {
      const messages = [...window.messages].sort((a, b) => a.sentAt.getTime() - b.sentAt.getTime());
      const participants = [...new Set(messages.map(nameOf))];
      const chat = { id: window.chatId, type: window.chatType, title: window.chatTitle };
      // One message, one line: a line break inside one would read as the next message.
      const lines = messages.map(
        (message) => `${nameOf(message)}: ${MESSAGE_PREFIX}${message.text.replace(/\s*[\r\n]+\s*/g, " ")}`,
      );
      return [`Earlier · ${headerLine(chat, participants, startedAt, options.timeZone)}`, ...lines].join(
        "\n",
      );
    })
    .join("\n\n");
}
