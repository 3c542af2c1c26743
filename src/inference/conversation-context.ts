import { type Config, ownerTimeZone } from "../config/config.ts";
import { type ChatInfo, headerLine } from "../dataset/examples.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { MEMORY_QUERY_TURNS, memoryQuery } from "../dataset/memory-query.ts";
import {
  DEFAULT_MEMORY_TOKENS,
  DEFAULT_MEMORY_WINDOWS,
  fitWindows,
  memoryTurnText,
  recordedMemory,
} from "../dataset/memory-turn.ts";
import { SESSION_GAP_MINUTES } from "../dataset/sessions.ts";
import type { ExcludedSpan, MemoryScope, RecalledWindow, Retriever } from "../history/memory/retriever.ts";
import { buildPrompt, type Prompt, type PromptTurn } from "./prompt.ts";

/**
 * The one way a conversation becomes a prompt, for the bot, `twin chat` and `twin eval` alike: the
 * header, what memory recalls, the recent real sessions, the live conversation and the speaker's
 * open turn. No caller builds a prompt of its own (src/architecture.test.ts holds them to it), so
 * what the model reads never depends on where the conversation happens.
 */

/** How conversations are cut and fitted: one place, from the dataset's manifest and the config. */
export type ContextSettings = {
  /** The silence that ends a session: the one the model's dataset was cut at. */
  gapMs: number;
  /** The owner's zone: the header's and the memory's local times. */
  timeZone: string;
  /** The prompt's budget in tokens: the context less the room kept for the reply. */
  maxTokens: number;
  /**
   * Recall: whether, how many windows, the memory turn's budget, and how many live turns make the
   * query. A model trained with memory is served with the memory it was trained with (its manifest).
   */
  memory: { enabled: boolean; windows: number; maxTokens?: number; queryTurns?: number };
};

/**
 * The settings of a conversation (pure): the session gap of the latest ready dataset (`manifest`;
 * the default gap without one), the owner's time zone (TWIN_TZ or --tz, else `storedTimeZone`, the
 * one the last import stored, else this machine's), the token budget from the config, and memory
 * as the dataset was built with it (`twin dataset --memory`) unless TWIN_MEMORY and
 * TWIN_MEMORY_WINDOWS say otherwise.
 */
export function contextSettings(
  config: Pick<Config, "timeZone" | "inference" | "memory">,
  manifest: Pick<Manifest, "settings"> | undefined,
  storedTimeZone?: string | null,
): ContextSettings {
  const gapMinutes = manifest?.settings.gapMinutes;
  const minutes = typeof gapMinutes === "number" && gapMinutes > 0 ? gapMinutes : SESSION_GAP_MINUTES;
  return {
    gapMs: minutes * 60_000,
    timeZone: ownerTimeZone(config.timeZone, storedTimeZone),
    maxTokens: config.inference.contextSize - config.inference.maxReplyTokens,
    memory: servedMemory(config.memory, manifest),
  };
}

function servedMemory(
  config: Pick<Config["memory"], "enabled" | "windows">,
  manifest: Pick<Manifest, "settings"> | undefined,
): ContextSettings["memory"] {
  const trained = recordedMemory(manifest?.settings);
  return {
    enabled: config.enabled ?? trained?.enabled ?? false,
    windows: config.windows ?? (trained?.enabled ? trained.windows : DEFAULT_MEMORY_WINDOWS),
    maxTokens: trained?.enabled ? trained.maxTokens : DEFAULT_MEMORY_TOKENS,
    queryTurns: trained?.enabled ? trained.queryTurns : MEMORY_QUERY_TURNS,
  };
}

/** What the header line says; a dataset example brings its own line, written when it was built. */
export type HeaderFacts = { chat: ChatInfo; participants: string[]; startedAt: number };

export type ConversationRequest = {
  header: HeaderFacts | string;
  /** Real sessions before the live conversation, oldest first (the prompt drops the oldest to fit). */
  recent: PromptTurn[];
  /** Where the recent sessions and the live conversation lie: memory recalls none of it. */
  recentSpans: ExcludedSpan[];
  /** The conversation being answered, oldest first. */
  live: PromptTurn[];
  /** Who speaks next. */
  replyAs: string;
  /** Whose history memory may draw on (the privacy rule: retriever.ts). */
  scope: MemoryScope;
  /** Recall only what was sent before this (an evaluated session's start). */
  before?: Date | undefined;
  /** Names by person id as the prompt shows them, so recalled messages name people alike. */
  names?: ReadonlyMap<number, string> | undefined;
};

/** The prompt and its parts as they went in: only what fitted the budget. */
export type ConversationPrompt = {
  header: string;
  memory: RecalledWindow[];
  recent: PromptTurn[];
  live: PromptTurn[];
  replyAs: string;
  prompt: Prompt;
};

export async function buildConversationContext(
  deps: { retriever?: Retriever | undefined; countTokens: (text: string) => number },
  settings: ContextSettings,
  request: ConversationRequest,
): Promise<ConversationPrompt> {
  const header =
    typeof request.header === "string"
      ? request.header
      : headerLine(
          request.header.chat,
          request.header.participants,
          request.header.startedAt,
          settings.timeZone,
        );
  const render = (windows: readonly RecalledWindow[]) =>
    memoryTurnText(windows, { timeZone: settings.timeZone, nameOf: (id) => request.names?.get(id) });
  // The memory turn keeps to its own budget as the dataset's did: the weakest windows go first.
  const recalled = fitWindows(
    await recall(deps.retriever, settings, request),
    settings.memory.maxTokens ?? DEFAULT_MEMORY_TOKENS,
    (windows) => deps.countTokens(render(windows)),
  );
  const memory = render(recalled);
  const prompt = buildPrompt({
    header,
    memory,
    history: request.recent,
    live: request.live,
    replyAs: request.replyAs,
    maxTokens: settings.maxTokens,
    countTokens: deps.countTokens,
  });
  return {
    header,
    memory: prompt.droppedMemory ? [] : recalled,
    recent: request.recent.slice(prompt.droppedHistoryTurns),
    live: request.live.slice(prompt.droppedLiveTurns),
    replyAs: request.replyAs,
    prompt,
  };
}

async function recall(
  retriever: Retriever | undefined,
  settings: ContextSettings,
  request: ConversationRequest,
): Promise<RecalledWindow[]> {
  if (!retriever || !settings.memory.enabled || settings.memory.windows <= 0) return [];
  const text = memoryQuery(
    request.live,
    request.live.length,
    settings.memory.queryTurns ?? MEMORY_QUERY_TURNS,
  );
  if (text.length === 0) return [];
  return retriever.retrieve({
    text,
    scope: request.scope,
    exclude: request.recentSpans,
    limit: settings.memory.windows,
    before: request.before,
  });
}
