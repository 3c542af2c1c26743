import { setTimeout as sleep } from "node:timers/promises";
import { HistoryError } from "../history/history.errors.ts";
import type { IndexOutcome } from "../history/memory/memory.repository.ts";
import { chatScope, type Retriever } from "../history/memory/retriever.ts";
import type { ChatInfo, Example, RecallPlan } from "./examples.ts";
import { estimateTokens, type Tokenize } from "./length.ts";
import { fitWindows, type MemorySettings, memoryTurnText, withMemoryTurn } from "./memory-turn.ts";
import type { NameTable } from "./names.ts";

/**
 * Memory in a dataset (`twin dataset --memory on`): every example gets the memory turn the server
 * would build for it, by the one renderer (memory-turn.ts), so the model trains as it is served.
 * Two rules keep the figures honest: no future (recalled only from before the example's session,
 * and never the recent history a prompt already carries) and no answer in the query (only turns
 * before the first trained one search). Trained segments are left exactly as they were, so a
 * memory dataset trains on the same tokens as one without.
 */

export type MemoryCounts = { examples: number; windows: number; tokens: number };

const BUSY_POLL_MS = 1000;

type IndexWait = {
  signal?: AbortSignal | undefined;
  onIndexing?: ((progress: { indexed: number; total: number }) => void) | undefined;
};

/**
 * Brings the memory index up to date (another process indexing: waits for it); refuses with the
 * reason when the server's text search cannot index this history.
 */
export async function ensureIndexed(
  memory: { index: () => Promise<IndexOutcome> },
  options: IndexWait,
): Promise<void> {
  const refusal = await indexOrRefusal(memory, options);
  if (refusal !== undefined) throw memoryRefused(refusal);
}

/** The error of a build that asked for memory by name where the index is refused. */
export function memoryRefused(refusal: string): HistoryError {
  return new HistoryError(`--memory on needs the memory index: ${refusal}`);
}

/** As ensureIndexed, but the refusal comes back instead of thrown: a default of on can fall back. */
export async function indexOrRefusal(
  memory: { index: () => Promise<IndexOutcome> },
  options: IndexWait,
): Promise<string | undefined> {
  for (;;) {
    const outcome = await memory.index();
    options.onIndexing?.({ indexed: outcome.indexed, total: outcome.total });
    if (outcome.status === "refused") return outcome.refusal ?? "refused";
    if (outcome.status !== "busy") return undefined;
    if (options.signal?.aborted) throw new HistoryError("dataset build cancelled");
    await sleep(BUSY_POLL_MS);
  }
}

/**
 * One chat's examples with their memory turns: each plan's query searched in the chat's scope
 * (retriever.ts: the privacy rule) before its session, outside the `recentMessages` a prompt would
 * show; the windows that fit the turn's budget rendered after the header. Examples whose search
 * finds nothing stay as they are.
 */
export async function addMemory(
  examples: Example[],
  plans: ReadonlyMap<string, RecallPlan>,
  context: {
    chat: ChatInfo;
    memory: MemorySettings;
    retriever: Retriever;
    recentSince: (chatId: number, before: Date, count: number) => Promise<Date | undefined>;
    names: NameTable;
    timeZone: string;
    tokenize?: Tokenize | undefined;
    counts: MemoryCounts;
  },
): Promise<Example[]> {
  const { chat, memory, counts } = context;
  const tokenize = context.tokenize ?? estimateTokens;
  const render = (windows: Parameters<typeof memoryTurnText>[0]) =>
    memoryTurnText(windows, { timeZone: context.timeZone, nameOf: (id) => context.names.get(id) });
  // Sessions split into parts share their recent span: asked once per session.
  const recentStarts = new Map<number, Promise<Date | undefined>>();
  const out: Example[] = [];
  for (const example of examples) {
    const plan = plans.get(example.id);
    if (!plan || plan.query.length === 0 || memory.windows <= 0) {
      out.push(example);
      continue;
    }
    const before = new Date(plan.sessionStartedAt);
    let recent = recentStarts.get(plan.sessionStartedAt);
    if (!recent) {
      recent = context.recentSince(chat.id, before, memory.recentMessages);
      recentStarts.set(plan.sessionStartedAt, recent);
    }
    const from = (await recent) ?? before;
    const recalled = await context.retriever.retrieve({
      text: plan.query,
      scope: chatScope(chat.id),
      exclude: [{ chatId: chat.id, from, to: new Date(plan.sessionEndedAt) }],
      limit: memory.windows,
      before,
    });
    const windows = fitWindows(recalled, memory.maxTokens, (kept) => tokenize(render(kept)));
    const text = render(windows);
    if (!text) {
      out.push(example);
      continue;
    }
    counts.examples++;
    counts.windows += windows.length;
    counts.tokens += tokenize(text);
    out.push({ ...example, segments: withMemoryTurn(example.segments, text) });
  }
  return out;
}
