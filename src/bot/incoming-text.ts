import type { Chat, Message, MessageOrigin, User } from "grammy/types";
import { forwardMarker, pollText, replyMarker } from "../dataset/markers.ts";
import { messageContent } from "../dataset/sessions.ts";
import type { MessageKind } from "../history/message.ts";

/** Which kind the history store would give this Bot API message (the dataset's tags follow it). */
export function messageKind(message: Partial<Message>): MessageKind {
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
 * What a message puts into the prompt (pure): text as written, a sticker as its emoji, a poll as
 * `[poll] QUESTION — OPTION / …` (markers.ts), other media as the same short tag the dataset uses,
 * with any caption.
 */
export function incomingText(message: Partial<Message>): string {
  if (message.poll) {
    return pollText(
      message.poll.question,
      message.poll.options.map((option) => option.text),
    );
  }
  const kind = messageKind(message);
  const text = message.text ?? message.caption ?? "";
  const emoji = message.sticker?.emoji ?? message.dice?.emoji ?? null;
  return messageContent({ kind, text, emoji }, "tag");
}

/** What a marker needs to know of the conversation a message comes into. */
export type MarkerContext = {
  /**
   * The names the prompt gives people, by Telegram user id: the bot's own id as the one the twin
   * plays there (the owner with a friend, the simulated friend in /talk), the sender as the prompt
   * names them. Anyone else goes by their Telegram name.
   */
  names: ReadonlyMap<number, string>;
  /**
   * Telegram ids of the twin's messages in the turn right before this message's: a reply to one of
   * them needs no marker, the conversation's flow already says what it answers.
   */
  previousTurn: ReadonlySet<number>;
};

/**
 * The marker line the prompt shows before a message (pure; src/dataset/markers.ts), as the dataset
 * renders history: `[forwarded from NAME]` for a forward; `[reply to NAME: "…"]` for a reply to a
 * message outside the previous turn (a reply to the friend's own words or to an older twin message,
 * or to a message in another chat); null for everything else. A forward that is also a reply gets
 * the forward marker only (the dataset does the same: a forward's line is someone else's words,
 * whatever it answered).
 */
export function incomingMarker(message: Message, context: MarkerContext): string | null {
  if (message.forward_origin) return forwardMarker(originName(message.forward_origin, context.names));
  const replied = message.reply_to_message;
  if (replied) {
    if (context.previousTurn.has(replied.message_id)) return null;
    const quoted = incomingText(replied);
    if (!quoted) return null; // nothing to quote (a service message: a forum topic's start)
    return replyMarker(authorName(replied, context.names), quoted);
  }
  const external = message.external_reply;
  if (external) {
    // A reply to a message in another chat: Telegram gives its media and the quoted part, not its text.
    const quoted = message.quote?.text ?? incomingText(external);
    if (!quoted) return null;
    return replyMarker(originName(external.origin, context.names), quoted);
  }
  return null;
}

/** A Telegram user's full name, as friends' names are taken everywhere in the bot. */
export const fullName = (user: Pick<User, "first_name" | "last_name">) =>
  [user.first_name, user.last_name].filter(Boolean).join(" ");

function chatName(chat: Chat): string {
  return chat.type === "private" ? fullName(chat) : chat.title;
}

/** Who wrote what a forward or an external reply carries (Bot API 7 message origins). */
function originName(origin: MessageOrigin, names: ReadonlyMap<number, string>): string {
  switch (origin.type) {
    case "user":
      return names.get(origin.sender_user.id) ?? fullName(origin.sender_user);
    case "hidden_user":
      return origin.sender_user_name;
    case "chat":
      return chatName(origin.sender_chat);
    case "channel":
      return chatName(origin.chat);
  }
}

/** Who wrote a message in this chat: a user by the prompt's name for them, a chat (an anonymous admin, a channel) by its title. */
function authorName(message: Message, names: ReadonlyMap<number, string>): string {
  if (message.sender_chat) return chatName(message.sender_chat);
  if (!message.from) return "";
  return names.get(message.from.id) ?? fullName(message.from);
}
