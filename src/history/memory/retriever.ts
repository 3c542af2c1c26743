import { peerKindOf } from "../identity.ts";

/**
 * Memory: what the twin recalls from the whole history for a live conversation. Retrieval sits
 * behind this one interface (full-text search in PostgreSQL today; embeddings could come later).
 */

/** Whose history a conversation may draw on (the privacy rule). */
export type MemoryScope =
  /** A friend's conversation: only chats the friend took part in (sent a message, or a member list names them). */
  | { kind: "friend"; personId: number }
  /** A group conversation: only that group. */
  | { kind: "group"; chatId: number }
  /** The owner's simulated chats (/talk): everything. */
  | { kind: "all" };

/** Stretches of one chat already in the prompt (recent real sessions, the live one): never recalled. */
export type ExcludedSpan = { chatId: number; from: Date; to: Date };

export type RetrievalQuery = {
  /** The live conversation's last turns, as text (the messages, newest last). */
  text: string[];
  scope: MemoryScope;
  exclude: ExcludedSpan[];
  /** At most this many windows. */
  limit: number;
  /** Only messages sent before this time (a dataset example's start; default: no bound). */
  before?: Date | undefined;
};

/** One message of a recalled window. */
export type RecalledMessage = {
  messageId: number;
  senderId: number | null;
  senderName: string | null;
  sentAt: Date;
  text: string;
};

/** A past exchange: a short window of one chat's messages around a hit, oldest first. */
export type RecalledWindow = {
  chatId: number;
  chatTitle: string | null;
  chatType: string;
  /** The message that matched. */
  hitMessageId: number;
  /** How it was found: full-text search, or the trigram fallback. */
  via: "text" | "trigram";
  score: number;
  messages: RecalledMessage[];
};

export interface Retriever {
  retrieve(query: RetrievalQuery): Promise<RecalledWindow[]>;
}

/** Whose history memory may draw on in a chat (pure): a private chat's person, else that group. */
export function chatScope(chatId: number): MemoryScope {
  return peerKindOf(chatId) === "user" ? { kind: "friend", personId: chatId } : { kind: "group", chatId };
}
