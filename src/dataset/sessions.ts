import { isForwarded, type MessageKind, type StoredMessage } from "../history/message.ts";
import { forwardMarker, pollFromDetails, pollText, replyMarker } from "./markers.ts";

/**
 * Sessions (pure): messages of one chat with no gap longer than `gap`, measured as real elapsed
 * time (never the clock time of day, which would merge messages days apart). Consecutive messages
 * of one speaker merge into one turn, each message kept as its own line.
 */

/** A message as sessions are built from it (read by the history module). */
export type DatasetMessage = StoredMessage;

export type Turn = {
  speakerId: number;
  /** Its lines in order: the messages, and the markers shown with them (markers.ts). */
  messages: string[];
  startedAt: number;
  /** Indexes of lines that are context only, never trained: markers and forwarded text. */
  contextLines: Set<number>;
  /** How many stored messages the turn holds (its lines less the markers). */
  messageCount: number;
};

export type Session = {
  chatId: number;
  startedAt: number;
  endedAt: number;
  turns: Turn[];
};

/** How non-text messages enter a turn: a short bracketed tag (with any caption), or not at all. */
export type MediaMode = "tag" | "drop";

/** Forwarded messages: shown as untrained context after a `[forwarded from NAME]` line, or left out. */
export type ForwardsMode = "context" | "drop";

export type SessionOptions = {
  gapMs: number;
  media: MediaMode;
  /** Default "context". */
  forwards?: ForwardsMode | undefined;
  /** The name a marker gives a person (the dataset's name table); otherwise the stored name. */
  nameOf?: ((id: number) => string | undefined) | undefined;
};

/**
 * The silence that ends a session, everywhere: the dataset cuts training sessions at it, and the
 * bot and `twin chat` cut their conversations the same way, so the model sees the rhythm it learned.
 */
export const SESSION_GAP_MINUTES = 10;
export const SESSION_GAP_MS = SESSION_GAP_MINUTES * 60_000;

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
 * What a message contributes to a turn: text as written, a sticker or dice as its emoji, a poll as
 * its question and options, other media as a tag plus caption (or only the caption when media are
 * dropped); service messages and empty messages contribute nothing.
 */
export function messageContent(
  message: Pick<DatasetMessage, "kind" | "text" | "emoji" | "details">,
  media: MediaMode,
): string {
  const text = message.text.trim();
  // A poll is words: its question and options, after the tag (without it when media are dropped).
  const poll = message.kind === "poll" ? pollFromDetails(message.details) : undefined;
  if (poll) {
    const line = pollText(poll.question, poll.options);
    return media === "tag" ? line : line.slice("[poll] ".length);
  }
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

/**
 * Cuts one chat's messages (sorted by time) into sessions of merged turns. A forwarded message
 * becomes context lines after a `[forwarded from NAME]` marker (one marker for a run of forwards
 * from one author); a reply to anything but the previous turn gets a `[reply to NAME: "…"]` line
 * before it, when the store has the message it replies to.
 */
export function buildSessions(messages: Iterable<DatasetMessage>, options: SessionOptions): Session[] {
  const sessions: Session[] = [];
  let current: Session | undefined;
  let lastAt = Number.NEGATIVE_INFINITY;
  /** Which turn of the current session each message went into. */
  const turnOf = new Map<number, number>();
  /** The forward marker the current turn's last lines follow, while they are forwarded text. */
  let forwardRun: string | undefined;
  const nameOf = (id: number | null | undefined, stored: string | null | undefined) =>
    (id === null || id === undefined ? undefined : options.nameOf?.(id)) ?? stored ?? null;
  for (const message of messages) {
    if (message.senderId === null) continue;
    const forwarded = isForwarded(message);
    if (forwarded && options.forwards === "drop") continue;
    const content = messageContent(message, options.media);
    if (!content) continue;
    if (!current || message.sentAt - lastAt > options.gapMs) {
      current = { chatId: message.chatId, startedAt: message.sentAt, endedAt: message.sentAt, turns: [] };
      sessions.push(current);
      turnOf.clear();
    }
    const last = current.turns.at(-1);
    const turn: Turn =
      last && last.speakerId === message.senderId
        ? last
        : {
            speakerId: message.senderId,
            messages: [],
            startedAt: message.sentAt,
            contextLines: new Set(),
            messageCount: 0,
          };
    if (turn !== last) {
      current.turns.push(turn);
      forwardRun = undefined;
    }
    const turnIndex = current.turns.length - 1;
    const add = (line: string, context: boolean) => {
      if (context) turn.contextLines.add(turn.messages.length);
      turn.messages.push(line);
    };
    if (forwarded) {
      const marker = forwardMarker(nameOf(message.forwardedFromId, message.forwardedFromName));
      if (marker !== forwardRun) add(marker, true);
      add(content, true);
      forwardRun = marker;
    } else {
      const replied = message.replyTo;
      const repliedTurn = message.replyToMessageId == null ? undefined : turnOf.get(message.replyToMessageId);
      if (replied && repliedTurn !== turnIndex - 1) {
        const quoted = messageContent(replied, options.media);
        if (quoted) add(replyMarker(nameOf(replied.senderId, replied.senderName), quoted), true);
      }
      add(content, false);
      forwardRun = undefined;
    }
    turn.messageCount++;
    turnOf.set(message.messageId, turnIndex);
    current.endedAt = message.sentAt;
    lastAt = message.sentAt;
  }
  return sessions;
}
