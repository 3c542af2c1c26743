import createDebug from "debug";
import type { App } from "../app.ts";
import { HistoryError } from "../history/history.errors.ts";
import { peerKindOf } from "../history/identity.ts";
import { addTime, describeTimings, type StepTimings, timed } from "../step-timings.ts";
import { type Canary, canarySentence, plantCanary } from "./canary.ts";
import { ChatExampleStream } from "./chat-stream.ts";
import { openDatasetFolder } from "./dataset-folder.ts";
import {
  type ChatInfo,
  type ChatStats,
  type Example,
  type ExampleSettings,
  emptyChatStats,
  type RecallPlan,
} from "./examples.ts";
import type { Tokenize } from "./length.ts";
import { buildManifest, type Manifest } from "./manifest.ts";
import { addMemory, indexOrRefusal, type MemoryCounts, memoryRefused } from "./memory-examples.ts";
import {
  DEFAULT_MEMORY_TOKENS,
  DEFAULT_MEMORY_WINDOWS,
  defaultMemorySettings,
  type MemorySettings,
} from "./memory-turn.ts";
import { buildNameTable } from "./names.ts";
import { emptyRedactionCounts } from "./redact.ts";
import { type DatasetMessage, SESSION_GAP_MINUTES } from "./sessions.ts";

const debug = createDebug("twin:dataset");

export type DatasetOptions = ExampleSettings & {
  /** Group chats as well as personal chats. */
  groups: boolean;
  /** Channels as well: their posts, one speaker each, trained as monologues (a channel owner's only source). */
  channels?: boolean | undefined;
  /** ISO date, or undefined for the default: 24 months before the owner's last message; null: everything. */
  since: string | null | undefined;
  excludeChats: number[];
  /** Only personal chats with people the owner allowed in the bot. */
  allowedOnly?: boolean;
  excludePeople: number[];
  names: Map<number, string>;
  /** Also write train.jsonl, eval.jsonl and manifest.json here. */
  outDir?: string | undefined;
  /** A real token counter (see tokenizer.ts); the conservative estimate without it. */
  tokenizer?: { name: string; tokenize: Tokenize } | undefined;
  onProgress?: (progress: { chats: number; totalChats: number; examples: number }) => void;
  /** Stops between chats; the unfinished dataset is marked failed. */
  signal?: AbortSignal | undefined;
  /** Plant a leakage canary (canary.ts) in this chat, or in the chat where the owner wrote most. */
  canary?: { chatId?: number | undefined } | undefined;
  /** A build silent this long has lost its process (TWIN_WORKER_STALE_S); default 60. */
  staleSeconds?: number | undefined;
  /**
   * Memory (`--memory on`, the default): each example gets the memory turn serving would build for
   * it, recalled only from before its session and searched only with the turns before its first
   * trained one. `ifUnavailable: "off"` (the default's) builds without memory, and says why, where
   * the server's text search cannot index the history; "refuse" (an explicit `--memory on`) fails.
   */
  memory?: (Pick<MemorySettings, "windows" | "maxTokens"> & { ifUnavailable?: "off" | "refuse" }) | undefined;
  /** Told while the memory index is brought up to date before a memory build. */
  onIndexing?: ((progress: { indexed: number; total: number }) => void) | undefined;
};

export type DatasetResult = {
  datasetId: number;
  manifest: Manifest;
  files: string[];
  /** Why memory was asked for by default but left off (the server cannot search the history). */
  memoryOff?: string | undefined;
};

/** The settings a dataset gets when nobody chose: the CLI's option defaults, the bot's /dataset. */
export const DATASET_DEFAULTS = {
  gapMinutes: SESSION_GAP_MINUTES,
  media: "tag",
  forwards: "context",
  header: true,
  loss: { kind: "all" },
  minTurns: 2,
  maxTokens: 1024,
  evalFraction: 0.05,
  redact: false,
  groups: false,
  channels: false,
  // On since the two-seed comparison on the IRC fixture (bench/memory/results/irc-2026-12-04.md):
  // held-out loss on message text 0.032 nats lower, 95% interval -0.040 to -0.022.
  memory: { windows: DEFAULT_MEMORY_WINDOWS, maxTokens: DEFAULT_MEMORY_TOKENS, ifUnavailable: "off" },
} as const satisfies Partial<DatasetOptions>;

export function defaultDatasetOptions(timeZone: string): DatasetOptions {
  return {
    ...DATASET_DEFAULTS,
    timeZone,
    since: undefined,
    excludeChats: [],
    excludePeople: [],
    names: new Map(),
  };
}

const TELEGRAM_SERVICE_ACCOUNT = 777000;
const GROUP_TYPES = ["private_group", "private_supergroup", "public_supergroup"];
const CHANNEL_TYPES = ["private_channel", "public_channel"];
const SINCE_MONTHS = 24;

/**
 * Builds a dataset from the history store: examples into PostgreSQL (and JSONL when asked) and a
 * manifest. Chats are read one at a time, in order, so memory holds one chat's messages.
 */
export async function buildDataset(
  { database, repositories }: Pick<App, "database" | "repositories">,
  options: DatasetOptions,
): Promise<DatasetResult> {
  const { history, dataset: repository, friends } = repositories;
  const preparing = performance.now();
  const owner = await history.getOwner();
  if (!owner)
    throw new HistoryError("The history store is empty: import an export first (twin import result.json).");
  if (peerKindOf(owner.personId) !== "user" && !options.channels && !options.allowedOnly) {
    throw new HistoryError(
      `The owner is the channel ${owner.name ?? ""} (${owner.personId}): its posts reach a dataset only with --channels.`,
    );
  }

  const since =
    options.since === undefined
      ? await history.monthsBeforeLastOwnMessage(owner.personId, SINCE_MONTHS)
      : options.since;
  const allowed = options.allowedOnly ? await friends.allowedIds() : undefined;
  const chats = (
    await history.chatsOfTypes({
      types: [
        "personal_chat",
        ...(options.groups && !allowed ? GROUP_TYPES : []),
        ...(options.channels && !allowed ? CHANNEL_TYPES : []),
      ],
      exclude: options.excludeChats,
    })
  ).filter((chat) => !allowed || allowed.includes(chat.id));
  const chatsById = new Map(chats.map((chat) => [chat.id, chat]));
  const excluded = new Set([...options.excludePeople, TELEGRAM_SERVICE_ACCOUNT, ...(await history.botIds())]);
  const optedOut = new Set((await friends.optedOutIds()).filter((id) => id !== owner.personId));
  const names = buildNameTable(await history.senders(), options.names, owner.personId);
  // Memory recalls from the search index: it must hold the whole history before anything is built.
  const memoryOff = options.memory ? await indexOrRefusal(repositories.memory, options) : undefined;
  if (memoryOff !== undefined && options.memory?.ifUnavailable !== "off") throw memoryRefused(memoryOff);
  const memorySettings: MemorySettings = defaultMemorySettings({
    enabled: options.memory !== undefined && memoryOff === undefined,
    windows: options.memory?.windows ?? 0,
    maxTokens: options.memory?.maxTokens ?? 0,
  });
  const settings: ExampleSettings = {
    gapMinutes: options.gapMinutes,
    media: options.media,
    forwards: options.forwards ?? DATASET_DEFAULTS.forwards,
    header: options.header,
    loss: options.loss,
    minTurns: options.minTurns,
    maxTokens: options.maxTokens,
    evalFraction: options.evalFraction,
    redact: options.redact,
    timeZone: options.timeZone,
  };
  const recorded = {
    ...settings,
    groups: options.groups,
    channels: options.channels ?? false,
    since,
    excludeChats: options.excludeChats,
    allowedOnly: options.allowedOnly ?? false,
    excludePeople: options.excludePeople,
    optedOut: [...optedOut],
    names: Object.fromEntries(options.names),
    tokenizer: options.tokenizer?.name ?? "estimate",
    memory: memorySettings,
  };
  const staleSeconds = options.staleSeconds ?? 60;
  await repository.failAbandonedBuilds(staleSeconds); // killed builds: failed, their rows removed
  const datasetId = await repository.create(recorded);
  const canaryChat = options.canary
    ? (options.canary.chatId ??
      (await history.busiestChat(
        owner.personId,
        chats.map((c) => c.id),
      )))
    : undefined;
  const canary: Canary | undefined =
    canaryChat === undefined ? undefined : { chatId: canaryChat, ...canarySentence(), planted: 0 };

  const stats: ChatStats = emptyChatStats();
  const chatsWithExamples = new Set<number>();
  const counts = { train: 0, eval: 0 };
  const memoryCounts: MemoryCounts = { examples: 0, windows: 0, tokens: 0 };
  const writer = options.outDir ? await openDatasetFolder(options.outDir) : undefined;
  const sink = await repository.openExampleSink(datasetId);
  const timings: StepTimings = {};
  addTime(timings, "prepare", preparing);
  const heartbeat = repository.keepBuildAlive(datasetId, staleSeconds);
  try {
    let done = 0;
    let open: { chatId: number; stream: ChatExampleStream; plans: Map<string, RecallPlan> } | undefined;
    /** The canary's chat is read whole: where it is planted depends on all of the owner's messages there. */
    let canaryMessages: DatasetMessage[] = [];
    const emit = async (chat: ChatInfo, built: Example[], plans: Map<string, RecallPlan>) => {
      const examples = memorySettings.enabled
        ? await addMemory(built, plans, {
            chat,
            memory: memorySettings,
            retriever: repositories.memory.retriever,
            recentSince: history.recentSince,
            names,
            timeZone: settings.timeZone,
            tokenize: options.tokenizer?.tokenize,
            counts: memoryCounts,
          })
        : built;
      plans.clear(); // these examples' plans are used: a long chat's do not pile up
      if (examples.length === 0) return;
      chatsWithExamples.add(chat.id);
      for (const example of examples) counts[example.split]++;
      await timed(timings, "copy out", () => sink.write(examples));
      if (writer) await timed(timings, "files", () => writer.write(examples));
    };
    await history.forEachChatMessages(
      chats.map((c) => c.id),
      since,
      async (chatId, messages, chatEnds) => {
        throwIfCancelled(options.signal);
        const chat = chatsById.get(chatId) as (typeof chats)[number];
        if (open?.chatId !== chatId) {
          const plans = new Map<string, RecallPlan>();
          const context = {
            settings,
            names,
            ownerId: owner.personId,
            tokenize: options.tokenizer?.tokenize,
            optedOut,
            recall: memorySettings.enabled ? { queryTurns: memorySettings.queryTurns, plans } : undefined,
          };
          open = { chatId, stream: new ChatExampleStream(chat, context, stats), plans };
        }
        let kept = messages.filter((m) => m.senderId !== null && !excluded.has(m.senderId));
        if (canary && chatId === canary.chatId) {
          for (const message of kept) canaryMessages.push(message);
          if (!chatEnds) return;
          const planted = plantCanary(canaryMessages, owner.personId, canary.sentence);
          kept = planted.messages;
          canary.planted = planted.planted;
          canaryMessages = []; // not emptied in place: plantCanary may hand back this very array
        }
        const building = performance.now();
        const built = open.stream.push(kept);
        if (chatEnds) built.push(...open.stream.end());
        addTime(timings, "sessions and rendering", building);
        await emit(chat, built, open.plans);
        if (!chatEnds) return;
        open = undefined;
        options.onProgress?.({
          chats: ++done,
          totalChats: chats.length,
          examples: counts.train + counts.eval,
        });
      },
      timings,
    );
    await timed(timings, "copy out", () => sink.flush());
    if (canary && canary.planted === 0) {
      throw new HistoryError(
        `the canary could not be planted: the owner wrote nothing in chat ${canary.chatId}`,
      );
    }
    const manifest: Manifest = buildManifest({
      datasetId,
      settings: recorded,
      owner: { id: owner.personId, name: names.get(owner.personId) ?? owner.name ?? String(owner.personId) },
      source: database.describe,
      stats,
      chats: chatsWithExamples.size,
      examples: counts,
      names,
      redactions: options.redact ? stats.redactions : emptyRedactionCounts(),
    });
    if (canary) manifest.canary = canary;
    if (memorySettings.enabled) manifest.memory = memoryCounts;
    throwIfCancelled(options.signal); // the last moment a cancel can still leave everything as it was
    const finishing = performance.now();
    const files = writer ? await writer.finish(manifest) : [];
    await repository.finish(datasetId, manifest);
    addTime(timings, "manifest", finishing);
    debug("time by step: %s", describeTimings(timings));
    return { datasetId, manifest, files, memoryOff };
  } catch (error) {
    await sink.abort();
    await writer?.abort();
    await repository.fail(datasetId, (error as Error).message).catch(() => undefined);
    throw error;
  } finally {
    heartbeat.stop();
  }
}

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new HistoryError("dataset build cancelled");
}
