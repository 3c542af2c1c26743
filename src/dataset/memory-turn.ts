import type { RecalledWindow } from "../history/memory/retriever.ts";
import { escapeControl, IM_END, IM_START, MESSAGE_PREFIX, type Segment, SYSTEM_ROLE } from "./chatml.ts";
import { headerLine } from "./examples.ts";
import { MEMORY_QUERY_TURNS } from "./memory-query.ts";
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

/** How memory is used, as a dataset records it (its manifest) and serving then follows. */
export type MemorySettings = {
  enabled: boolean;
  /** At most this many recalled windows in one memory turn. */
  windows: number;
  /** The query: the messages of this many turns before the turn being written. */
  queryTurns: number;
  /** The memory turn's own budget in tokens; windows beyond it go, the weakest first. */
  maxTokens: number;
  /** The real messages a prompt shows as recent history (never recalled again): the latest this many of the chat. */
  recentMessages: number;
};

/** Windows a memory turn shows when nobody chose (TWIN_MEMORY_WINDOWS, --memory-windows). */
export const DEFAULT_MEMORY_WINDOWS = 3;
/** The memory turn's budget in tokens when nobody chose: about three windows of a chat's messages. */
export const DEFAULT_MEMORY_TOKENS = 512;
/** The latest messages of a chat that a prompt carries as its recent history (inference/history-context.ts). */
export const RECENT_MESSAGES = 600;

/** The settings when nobody chose: off, with the windows and budget memory gets once on. */
export function defaultMemorySettings(options: { enabled: boolean; windows: number; maxTokens: number }) {
  return {
    enabled: options.enabled,
    windows: options.windows,
    queryTurns: MEMORY_QUERY_TURNS,
    maxTokens: options.maxTokens,
    recentMessages: RECENT_MESSAGES,
  } satisfies MemorySettings;
}

/**
 * The memory settings a manifest records (pure); undefined for a dataset built before memory
 * existed or with a value that is not one (then serving keeps its own).
 */
export function recordedMemory(settings: Record<string, unknown> | undefined): MemorySettings | undefined {
  const memory = settings?.memory as Partial<MemorySettings> | undefined;
  if (!memory || typeof memory.enabled !== "boolean") return undefined;
  const positive = (value: unknown, fallback: number) =>
    typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : fallback;
  return {
    enabled: memory.enabled,
    windows: positive(memory.windows, DEFAULT_MEMORY_WINDOWS),
    queryTurns: positive(memory.queryTurns, MEMORY_QUERY_TURNS),
    maxTokens: positive(memory.maxTokens, DEFAULT_MEMORY_TOKENS),
    recentMessages: positive(memory.recentMessages, RECENT_MESSAGES),
  };
}

/**
 * The windows that fit `maxTokens` once rendered (pure): the best-scored first, each kept while the
 * turn still fits, so a memory turn is never cut mid-window and the prompt's budget stays the same.
 */
export function fitWindows(
  windows: readonly RecalledWindow[],
  maxTokens: number,
  cost: (windows: readonly RecalledWindow[]) => number,
): RecalledWindow[] {
  const kept: RecalledWindow[] = [];
  for (const window of [...windows].sort((a, b) => b.score - a.score)) {
    if (cost([...kept, window]) <= maxTokens) kept.push(window);
  }
  return windows.filter((window) => kept.includes(window));
}

/**
 * A dataset example's segments with the memory turn (pure): one untrained system turn right after
 * the header (first without one), joined by the newline every turn ends with, as a prompt has it.
 */
export function withMemoryTurn(segments: readonly Segment[], text: string): Segment[] {
  if (!text) return [...segments];
  const turn: Segment = {
    text: `${IM_START}${SYSTEM_ROLE}\n${escapeControl(text)}${IM_END}`,
    train: false,
    speaker: SYSTEM_ROLE,
  };
  const first = segments[0];
  if (first?.speaker === SYSTEM_ROLE && first.text.endsWith(IM_END)) {
    return [first, { text: "\n", train: false }, turn, ...segments.slice(1)];
  }
  return [turn, { text: "\n", train: false }, ...segments];
}
