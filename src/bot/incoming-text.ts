import type { Message } from "grammy/types";
import { messageContent } from "../dataset/sessions.ts";
import type { MessageKind } from "../history/history.tables.ts";

/** Which kind the history store would give this Bot API message (the dataset's tags follow it). */
export function messageKind(message: Message): MessageKind {
  if (message.sticker) return "sticker";
  if (message.dice) return "dice";
  if (message.photo) return "photo";
  if (message.video_note) return "video_message";
  if (message.animation) return "animation"; // before document: a GIF carries both
  if (message.video) return "video";
  if (message.voice) return "voice";
  if (message.audio) return "audio";
  if (message.document) return "file";
  if (message.poll) return "poll";
  if (message.venue) return "venue";
  if (message.location) return "location";
  if (message.contact) return "contact";
  if (message.game) return "game";
  if (message.story) return "story";
  if (message.text !== undefined) return "text";
  return "unsupported";
}

/**
 * What a friend's message puts into the prompt (pure): text as written, a sticker as its emoji,
 * other media as the same short tag the dataset uses, with any caption.
 */
export function incomingText(message: Message): string {
  const kind = messageKind(message);
  const text = message.text ?? message.caption ?? message.poll?.question ?? "";
  const emoji = message.sticker?.emoji ?? message.dice?.emoji ?? null;
  return messageContent({ kind, text, emoji }, "tag");
}
