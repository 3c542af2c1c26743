import { DateTime } from "luxon";
import { joinSegments, renderSegments, type Segment, turnBody } from "./chatml.ts";
import { estimateTokens, splitTurns, type Tokenize } from "./length.ts";
import type { NameTable } from "./names.ts";
import { emptyRedactionCounts, type RedactionCounts, redact } from "./redact.ts";
import { buildSessions, type DatasetMessage, type MediaMode, type Session, type Turn } from "./sessions.ts";

/**
 * From one chat's messages to training examples (pure): redaction, sessions, the session filter,
 * the time split, length splitting and rendering. The database and files stay outside.
 */

export type LossPolicy = { kind: "all" } | { kind: "owner" } | { kind: "people"; ids: number[] };

export type ExampleSettings = {
  gapMinutes: number;
  media: MediaMode;
  header: boolean;
  loss: LossPolicy;
  minTurns: number;
  maxTokens: number;
  evalFraction: number;
  redact: boolean;
  timeZone: string;
};

export type Example = {
  id: string;
  chat_id: number;
  started_at: string;
  split: "train" | "eval";
  speakers: { id: number; name: string }[];
  segments: Segment[];
};

export type ChatInfo = { id: number; type: string; title: string | null };

export type ChatStats = {
  sessions: number;
  turns: number;
  messages: number;
  /** Per speaker id: messages and estimated tokens in kept sessions. */
  speakers: Map<number, { messages: number; tokens: number }>;
  redactions: RedactionCounts;
  /** Estimated tokens of each example, for the length histogram. */
  exampleTokens: number[];
};

export const emptyChatStats = (): ChatStats => ({
  sessions: 0,
  turns: 0,
  messages: 0,
  speakers: new Map(),
  redactions: emptyRedactionCounts(),
  exampleTokens: [],
});

export function isTrainedSpeaker(policy: LossPolicy, speakerId: number, ownerId: number): boolean {
  switch (policy.kind) {
    case "all":
      return true;
    case "owner":
      return speakerId === ownerId;
    case "people":
      return policy.ids.includes(speakerId);
  }
}

/** The speakers whose presence after the first turn makes a session worth learning from. */
function isFocusSpeaker(policy: LossPolicy, speakerId: number, ownerId: number): boolean {
  return policy.kind === "people" ? policy.ids.includes(speakerId) : speakerId === ownerId;
}

export function keepSession(
  session: Session,
  settings: Pick<ExampleSettings, "minTurns" | "loss">,
  ownerId: number,
) {
  if (session.turns.length < settings.minTurns) return false;
  return session.turns.slice(1).some((turn) => isFocusSpeaker(settings.loss, turn.speakerId, ownerId));
}

/** How many of a chat's `count` sessions (the latest) go to evaluation. */
export function evalCount(count: number, fraction: number): number {
  if (fraction <= 0 || count === 0) return 0;
  // At least one from a chat with 10+ sessions; never the whole chat, so training sees it too.
  return Math.max(0, Math.min(count - 1, Math.max(Math.round(count * fraction), count >= 10 ? 1 : 0)));
}

const HEADER_NAMES = 10;

/** "Telegram chat · Alice, Bob · 2023-11-27 Mon 21:15", in the owner's time zone; long lists end in "+N more". */
export function headerLine(
  chat: ChatInfo,
  participants: string[],
  startedAt: number,
  timeZone: string,
): string {
  const kind =
    chat.type === "personal_chat"
      ? "chat"
      : `group${chat.title ? ` “${chat.title.replace(/[\r\n]+/g, " ")}”` : ""}`;
  const when = DateTime.fromMillis(startedAt, { zone: timeZone }).toFormat("yyyy-MM-dd ccc HH:mm");
  const shown = participants.slice(0, HEADER_NAMES).join(", ");
  const more = participants.length > HEADER_NAMES ? ` +${participants.length - HEADER_NAMES} more` : "";
  return `Telegram ${kind} · ${shown}${more} · ${when}`;
}

export function chatExamples(
  chat: ChatInfo,
  messages: DatasetMessage[],
  context: {
    settings: ExampleSettings;
    names: NameTable;
    ownerId: number;
    tokenize?: Tokenize | undefined;
    /** People who opted out of being simulated: their turns stay as context, never trained. */
    optedOut?: ReadonlySet<number> | undefined;
  },
  stats: ChatStats,
): Example[] {
  const { settings, names, ownerId } = context;
  const tokenize = context.tokenize ?? estimateTokens;
  const prepared = settings.redact
    ? messages.map((m) => (m.text ? { ...m, text: redact(m.text, stats.redactions) } : m))
    : messages;
  const sessions = buildSessions(prepared, {
    gapMs: settings.gapMinutes * 60_000,
    media: settings.media,
  }).filter((session) => keepSession(session, settings, ownerId));
  const heldOut = evalCount(sessions.length, settings.evalFraction);
  const nameOf = (id: number) => names.get(id) ?? `User ${id}`;
  const examples: Example[] = [];

  sessions.forEach((session, index) => {
    const split = index >= sessions.length - heldOut ? "eval" : "train";
    stats.sessions++;
    stats.turns += session.turns.length;
    const turnTokens = new Map<Turn, number>();
    for (const turn of session.turns) {
      stats.messages += turn.messages.length;
      const tokens = tokenize(`<|im_start|>${nameOf(turn.speakerId)}\n${turnBody(turn.messages)}\n`);
      turnTokens.set(turn, tokens);
      const speaker = stats.speakers.get(turn.speakerId) ?? { messages: 0, tokens: 0 };
      speaker.messages += turn.messages.length;
      speaker.tokens += tokens;
      stats.speakers.set(turn.speakerId, speaker);
    }
    // Each piece gets its own header (its participants, its start); the session's bounds its size.
    const headerFor = (turns: Turn[]) =>
      settings.header
        ? headerLine(
            chat,
            [...new Set(turns.map((t) => nameOf(t.speakerId)))],
            (turns[0] as Turn).startedAt,
            settings.timeZone,
          )
        : undefined;
    // The longest header any piece can get: its longest participants' names, a "+N more".
    const longestNames = [...new Set(session.turns.map((t) => nameOf(t.speakerId)))].sort(
      (a, b) => b.length - a.length,
    );
    const headerBound = settings.header
      ? tokenize(headerLine(chat, longestNames, session.startedAt, settings.timeZone)) + 8
      : 0;
    const pieces = splitTurns(session.turns, (turn) => turnTokens.get(turn) as number, {
      maxTokens: settings.maxTokens,
      contextTokens: Math.floor(settings.maxTokens / 4),
      fixedTokens: headerBound,
    });
    pieces.forEach((piece, part) => {
      const turns = [
        ...piece.context.map((t) => ({ speaker: nameOf(t.speakerId), messages: t.messages, train: false })),
        ...piece.turns.map((t) => ({
          speaker: nameOf(t.speakerId),
          messages: t.messages,
          train: isTrainedSpeaker(settings.loss, t.speakerId, ownerId) && !context.optedOut?.has(t.speakerId),
        })),
      ];
      const startedAt = (piece.turns[0] as Turn).startedAt;
      const segments = renderSegments(turns, headerFor([...piece.context, ...piece.turns]));
      const speakerIds = [...new Set([...piece.context, ...piece.turns].map((t) => t.speakerId))];
      stats.exampleTokens.push(tokenize(joinSegments(segments)));
      examples.push({
        id: `${chat.id}:${session.startedAt}:${part}`,
        chat_id: chat.id,
        started_at: new Date(startedAt).toISOString(),
        split,
        speakers: speakerIds.map((id) => ({ id, name: nameOf(id) })),
        segments,
      });
    });
  });
  return examples;
}
