import type { MessageKind } from "../history/history.tables.ts";

/**
 * Sessions (pure): messages of one chat with no gap longer than `gap`, measured as real elapsed
 * time (never the clock time of day, which would merge messages days apart). Consecutive messages
 * of one speaker merge into one turn, each message kept as its own line.
 */

export type DatasetMessage = {
  chatId: number;
  messageId: number;
  senderId: number | null;
  /** Milliseconds since the epoch, UTC. */
  sentAt: number;
  kind: MessageKind;
  text: string;
  emoji: string | null;
};

export type Turn = { speakerId: number; messages: string[]; startedAt: number };

export type Session = {
  chatId: number;
  startedAt: number;
  endedAt: number;
  turns: Turn[];
};

/** How non-text messages enter a turn: a short bracketed tag (with any caption), or not at all. */
export type MediaMode = "tag" | "drop";

const mediaTags: Partial<Record<MessageKind, string>> = {
  photo: "[photo]",
  video: "[video]",
  video_message: "[video message]",
  voice: "[voice message]",
  audio: "[audio]",
  animation: "[GIF]",
  file: "[file]",
  poll: "[poll]",
  location: "[location]",
  venue: "[location]",
  contact: "[contact]",
  game: "[game]",
  invoice: "[invoice]",
  giveaway: "[giveaway]",
  story: "[story]",
};

/**
 * What a message contributes to a turn: text as written, a sticker or dice as its emoji, other
 * media as a tag plus caption (or only the caption when media are dropped); service messages and
 * empty messages contribute nothing.
 */
export function messageContent(
  message: Pick<DatasetMessage, "kind" | "text" | "emoji">,
  media: MediaMode,
): string {
  const text = message.text.trim();
  switch (message.kind) {
    case "service":
    case "unsupported":
      return "";
    case "text":
      return text;
    case "sticker":
    case "dice":
      return message.emoji ?? (media === "tag" ? "[sticker]" : "");
    default: {
      const tag = media === "tag" ? (mediaTags[message.kind] ?? "[media]") : "";
      return [tag, text].filter(Boolean).join(" ");
    }
  }
}

/** Cuts one chat's messages (sorted by time) into sessions of merged turns. */
export function buildSessions(
  messages: Iterable<DatasetMessage>,
  options: { gapMs: number; media: MediaMode },
): Session[] {
  const sessions: Session[] = [];
  let current: Session | undefined;
  let lastAt = Number.NEGATIVE_INFINITY;
  for (const message of messages) {
    if (message.senderId === null) continue;
    const content = messageContent(message, options.media);
    if (!content) continue;
    if (!current || message.sentAt - lastAt > options.gapMs) {
      current = { chatId: message.chatId, startedAt: message.sentAt, endedAt: message.sentAt, turns: [] };
      sessions.push(current);
    }
    const last = current.turns.at(-1);
    if (last && last.speakerId === message.senderId) last.messages.push(content);
    else current.turns.push({ speakerId: message.senderId, messages: [content], startedAt: message.sentAt });
    current.endedAt = message.sentAt;
    lastAt = message.sentAt;
  }
  return sessions;
}
