import { DateTime } from "luxon";
import { joinSegments, MESSAGE_PREFIX, renderSegments, type Segment, turnBody } from "./chatml.ts";
import { estimateTokens, splitTurns, type Tokenize } from "./length.ts";
import { TRUNCATED, truncateToTokens } from "./markers.ts";
import { memoryQuery } from "./memory-query.ts";
import type { NameTable } from "./names.ts";
import { emptyRedactionCounts, type RedactionCounts, redact } from "./redact.ts";
import {
  buildSessions,
  type DatasetMessage,
  type ForwardsMode,
  type MediaMode,
  type Session,
  type Turn,
} from "./sessions.ts";

/**
 * From one chat's messages to training examples (pure): redaction, sessions, the session filter,
 * the time split, length splitting and rendering. The database and files stay outside.
 */

export type LossPolicy = { kind: "all" } | { kind: "owner" } | { kind: "people"; ids: number[] };

export type ExampleSettings = {
  gapMinutes: number;
  media: MediaMode;
  /** Forwarded messages as untrained context (the default) or left out. */
  forwards?: ForwardsMode | undefined;
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

/**
 * What memory may search for an example (`twin dataset --memory on`): the messages of the turns
 * before its first trained turn, and its session's bounds (nothing from the session on is recalled).
 * An empty query recalls nothing, as a prompt with no live turn does.
 */
export type RecallPlan = { query: string[]; sessionStartedAt: number; sessionEndedAt: number };

export type ChatStats = {
  sessions: number;
  turns: number;
  messages: number;
  /** Per speaker id: messages and estimated tokens in kept sessions, and their turns' lengths. */
  speakers: Map<number, SpeakerStats>;
  redactions: RedactionCounts;
  /** Estimated tokens of each example, for the length histogram. */
  exampleTokens: number[];
  /** What the markers (markers.ts) marked: forwarded messages, reply quotes, polls, cut turns. */
  markers: MarkerCounts;
};

export type MarkerCounts = { forwarded: number; replies: number; polls: number; truncated: number };

export type SpeakerStats = {
  messages: number;
  tokens: number;
  /**
   * How many of the speaker's turns have each length, in tokens of the turn as the model writes it
   * (its `>>> ` lines and `<|im_end|>`): a histogram, so a speaker's percentiles stay exact in
   * bounded memory.
   */
  turnTokens: Map<number, number>;
};

export const emptyChatStats = (): ChatStats => ({
  sessions: 0,
  turns: 0,
  messages: 0,
  speakers: new Map(),
  redactions: emptyRedactionCounts(),
  exampleTokens: [],
  markers: { forwarded: 0, replies: 0, polls: 0, truncated: 0 },
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

/** Channels are monologues: their posts come from the channel alone, with nobody to answer. */
export function isChannel(chat: Pick<ChatInfo, "type">): boolean {
  return chat.type === "private_channel" || chat.type === "public_channel";
}

/**
 * A session is worth learning from when a focus speaker answers in it (a turn after the first),
 * in a session of at least `minTurns` turns. A channel's session is one speaker's posts: kept
 * whenever that speaker is a focus speaker.
 */
export function keepSession(
  session: Session,
  settings: Pick<ExampleSettings, "minTurns" | "loss">,
  ownerId: number,
  monologue = false,
) {
  if (monologue) return session.turns.some((turn) => isFocusSpeaker(settings.loss, turn.speakerId, ownerId));
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
  const title = chat.title ? ` “${chat.title.replace(/[\r\n]+/g, " ")}”` : "";
  const kind = chat.type === "personal_chat" ? "chat" : `${isChannel(chat) ? "channel" : "group"}${title}`;
  const when = DateTime.fromMillis(startedAt, { zone: timeZone }).toFormat("yyyy-MM-dd ccc HH:mm");
  const shown = participants.slice(0, HEADER_NAMES).join(", ");
  const more = participants.length > HEADER_NAMES ? ` +${participants.length - HEADER_NAMES} more` : "";
  return `Telegram ${kind} · ${shown}${more} · ${when}`;
}

const roleCosts = new WeakMap<Tokenize, Map<string, number>>();
/** The tokens of a role header, counted once per tokenizer and name. */
function roleTokens(role: string, tokenize: Tokenize): number {
  let costs = roleCosts.get(tokenize);
  if (!costs) {
    costs = new Map();
    roleCosts.set(tokenize, costs);
  }
  let cost = costs.get(role);
  if (cost === undefined) {
    cost = tokenize(role);
    costs.set(role, cost);
  }
  return cost;
}

/** An example id is `<chat>:<session start, ms>:<part>` (chatExamples): its session's start, if it says. */
export function exampleSessionStart(exampleId: string): number | undefined {
  const start = Number(exampleId.split(":")[1]);
  return Number.isFinite(start) ? start : undefined;
}

/** What example building needs besides the messages: settings, names and whose turns are trained. */
export type ExampleContext = {
  settings: ExampleSettings;
  names: NameTable;
  ownerId: number;
  tokenize?: Tokenize | undefined;
  /** People who opted out of being simulated: their turns stay as context, never trained. */
  optedOut?: ReadonlySet<number> | undefined;
  /** Collects each example's recall plan by example id, the query `queryTurns` turns long. */
  recall?: { queryTurns: number; plans: Map<string, RecallPlan> } | undefined;
};

/** A chat's examples (pure): its sessions worth learning from, the latest held out for evaluation. */
export function chatExamples(
  chat: ChatInfo,
  messages: DatasetMessage[],
  context: ExampleContext,
  stats: ChatStats,
): Example[] {
  const sessions = chatSessions(chat, messages, context, stats);
  const heldOut = evalCount(sessions.length, context.settings.evalFraction);
  return sessions.flatMap((session, index) =>
    sessionExamples(chat, session, index >= sessions.length - heldOut ? "eval" : "train", context, stats),
  );
}

/**
 * The sessions worth learning from in a run of a chat's messages (pure but for the redaction
 * counts): redacted when asked, cut at gaps, filtered. A run cut where two messages are more than
 * the gap apart gives the same sessions as the whole chat would.
 */
export function chatSessions(
  chat: ChatInfo,
  messages: DatasetMessage[],
  context: Pick<ExampleContext, "settings" | "names" | "ownerId">,
  stats: ChatStats,
): Session[] {
  const { settings, names, ownerId } = context;
  const prepared = settings.redact
    ? messages.map((m) => ({
        ...m,
        text: m.text ? redact(m.text, stats.redactions) : m.text,
        replyTo: m.replyTo?.text
          ? { ...m.replyTo, text: redact(m.replyTo.text, stats.redactions) }
          : m.replyTo,
      }))
    : messages;
  return buildSessions(prepared, {
    gapMs: settings.gapMinutes * 60_000,
    media: settings.media,
    forwards: settings.forwards ?? "context",
    nameOf: (id) => names.get(id),
  }).filter((session) => keepSession(session, settings, ownerId, isChannel(chat)));
}

/** One kept session's examples (pure but for `stats`): its length-split pieces, rendered. */
export function sessionExamples(
  chat: ChatInfo,
  session: Session,
  split: Example["split"],
  context: ExampleContext,
  stats: ChatStats,
): Example[] {
  const { settings, names, ownerId } = context;
  const tokenize = context.tokenize ?? estimateTokens;
  const nameOf = (id: number) => names.get(id) ?? `User ${id}`;
  const examples: Example[] = [];
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
  stats.sessions++;
  stats.turns += session.turns.length;
  const turnTokens = new Map<Turn, number>();
  for (const turn of session.turns) {
    const role = `<|im_start|>${nameOf(turn.speakerId)}\n`;
    // A turn that alone would not fit beside the header is cut (a 1 MB message is one line).
    const { truncated, tokens } = fitTurn(turn, role, settings.maxTokens - headerBound, tokenize);
    if (truncated) stats.markers.truncated++;
    countMarkers(turn, stats.markers);
    stats.messages += turn.messageCount;
    turnTokens.set(turn, tokens);
    const speaker = stats.speakers.get(turn.speakerId) ?? { messages: 0, tokens: 0, turnTokens: new Map() };
    speaker.messages += turn.messageCount;
    speaker.tokens += tokens;
    // The turn as the speaker writes it, less its role header and the newline after it (counted
    // once per name, not per turn); context lines are not theirs to write.
    const body =
      turn.contextLines.size === 0
        ? tokens - roleTokens(role, tokenize) - 1
        : tokenize(turnBody(turn.messages.filter((_, i) => !turn.contextLines.has(i))));
    speaker.turnTokens.set(Math.max(1, body), (speaker.turnTokens.get(Math.max(1, body)) ?? 0) + 1);
    stats.speakers.set(turn.speakerId, speaker);
  }
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
        contextLines: t.contextLines,
      })),
    ];
    const startedAt = (piece.turns[0] as Turn).startedAt;
    const segments = renderSegments(turns, headerFor([...piece.context, ...piece.turns]));
    const speakerIds = [...new Set([...piece.context, ...piece.turns].map((t) => t.speakerId))];
    stats.exampleTokens.push(tokenize(joinSegments(segments)));
    const id = `${chat.id}:${session.startedAt}:${part}`;
    if (context.recall) {
      // Only turns before the first one trained: what the model learns to write never searches.
      const firstTrained = turns.findIndex((turn) => turn.train);
      context.recall.plans.set(id, {
        query: firstTrained < 0 ? [] : memoryQuery(turns, firstTrained, context.recall.queryTurns),
        sessionStartedAt: session.startedAt,
        sessionEndedAt: session.endedAt,
      });
    }
    examples.push({
      id,
      chat_id: chat.id,
      started_at: new Date(startedAt).toISOString(),
      split,
      speakers: speakerIds.map((id) => ({ id, name: nameOf(id) })),
      segments,
    });
  });
  return examples;
}

/**
 * Cuts `turn` in place to at most `budget` tokens with its role header: the line that crosses the
 * budget is cut at a word boundary and followed by a `… [truncated]` context line; the lines after
 * it go. Returns whether it cut, and the turn's tokens with its role header as it is now.
 */
export function fitTurn(
  turn: Turn,
  role: string,
  budget: number,
  tokenize: Tokenize,
): { truncated: boolean; tokens: number } {
  const cost = (lines: string[]) => tokenize(`${role}${turnBody(lines)}\n`);
  const whole = cost(turn.messages);
  if (whole <= budget) return { truncated: false, tokens: whole };
  // The lines that fit whole, then what is left for the one that does not.
  let kept = 0;
  while (kept < turn.messages.length && cost([...turn.messages.slice(0, kept + 1), TRUNCATED]) <= budget)
    kept++;
  const lines = turn.messages.slice(0, kept);
  const crossing = turn.messages[kept];
  if (crossing !== undefined) {
    const room = budget - cost([...lines, TRUNCATED]) - tokenize(MESSAGE_PREFIX) - 1;
    const cut = room > 0 ? truncateToTokens(crossing, room, tokenize).text : "";
    if (cut) {
      if (turn.contextLines.has(kept)) turn.contextLines.add(lines.length);
      lines.push(cut);
    }
  }
  for (const index of [...turn.contextLines]) if (index >= lines.length) turn.contextLines.delete(index);
  turn.contextLines.add(lines.length);
  lines.push(TRUNCATED);
  turn.messages = lines;
  return { truncated: true, tokens: cost(lines) };
}

/** Counts the markers a turn shows (see MarkerCounts). */
function countMarkers(turn: Turn, counts: MarkerCounts): void {
  turn.messages.forEach((line, index) => {
    if (line.startsWith("[poll] ")) counts.polls++;
    if (!turn.contextLines.has(index)) return;
    if (line.startsWith("[forwarded from ")) counts.forwarded++;
    else if (line.startsWith("[reply to ")) counts.replies++;
  });
}
