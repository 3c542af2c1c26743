import type { MessageKind } from "./history.tables.ts";

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

export type ChatRecord = { id: number; type: string; title: string | null };

export type PersonSighting = { id: number; name: string | null; seenAt: number };
