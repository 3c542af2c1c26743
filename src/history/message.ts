import type { ImportCounts, MessageKind } from "./history.tables.ts";

// The history's types other modules use, without reaching into its tables.
export type { ImportCounts, MessageKind };

/**
 * One stored message, in the shape both sources produce: the desktop import parses the export
 * into it and the userbot maps gramjs messages into it, so the same message gives the same row.
 */
export type MessageRecord = {
  chatId: number;
  messageId: number;
  senderId: number | null;
  senderName: string | null;
  /** Milliseconds since the epoch, UTC. */
  sentAt: number;
  editedAt: number | null;
  kind: MessageKind;
  text: string;
  emoji: string | null;
  replyToMessageId: number | null;
  forwardedFromName: string | null;
  forwardedFromId: number | null;
  viaBot: string | null;
  action: string | null;
  details: Record<string, unknown> | null;
};

/**
 * A stored message as readers use it (sessions, prompts): what was said, by whom, when, and what
 * the dataset's markers need (src/dataset/markers.ts): whether it was forwarded and from whom, a
 * poll's details, and the message it replies to when the store has that one.
 */
export type StoredMessage = Pick<
  MessageRecord,
  "chatId" | "messageId" | "senderId" | "sentAt" | "kind" | "text" | "emoji"
> &
  Partial<Pick<MessageRecord, "forwardedFromName" | "forwardedFromId" | "replyToMessageId" | "details">> & {
    replyTo?: RepliedMessage | null | undefined;
  };

/** The message a stored message replies to, as much of it as a reply marker quotes. */
export type RepliedMessage = Pick<
  MessageRecord,
  "senderId" | "senderName" | "kind" | "text" | "emoji" | "details"
>;

/**
 * Whether a stored message was forwarded: it has the original author's name or id. An importer
 * stores an empty name for a forward whose author Telegram does not name.
 */
export function isForwarded(message: Pick<StoredMessage, "forwardedFromName" | "forwardedFromId">): boolean {
  return (message.forwardedFromName ?? null) !== null || (message.forwardedFromId ?? null) !== null;
}

export type ChatRecord = { id: number; type: string; title: string | null };

export type PersonSighting = { id: number; name: string | null; seenAt: number };
