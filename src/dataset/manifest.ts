import type { Canary } from "./canary.ts";
import { FORMAT_VERSION } from "./chatml.ts";
import type { ChatStats } from "./examples.ts";
import type { NameTable } from "./names.ts";
import type { RedactionCounts } from "./redact.ts";

/** A dataset's manifest; `canary` when one was planted (canary.ts). */
export type Manifest = ReturnType<typeof buildManifest> & { canary?: Canary };

const TOP_SPEAKERS = 50;

/** Upper bounds of the length histogram's buckets, in estimated tokens. */
function bucketBounds(max: number): number[] {
  const bounds: number[] = [];
  for (let b = 32; b < max; b *= 2) bounds.push(b);
  bounds.push(max, Number.POSITIVE_INFINITY);
  return bounds;
}

export function lengthHistogram(lengths: number[], max: number) {
  const bounds = bucketBounds(max);
  const counts = bounds.map(() => 0);
  for (const length of lengths) {
    const bucket = bounds.findIndex((b) => length <= b);
    counts[bucket] = (counts[bucket] ?? 0) + 1;
  }
  let lower = 0;
  return bounds.map((upper, i) => {
    const bucket = {
      tokens: Number.isFinite(upper) ? `${lower + 1}-${upper}` : `>${lower}`,
      examples: counts[i] ?? 0,
    };
    lower = upper;
    return bucket;
  });
}

/** What a dataset is: its settings, source, counts, per-speaker shares and length histogram (pure). */
export function buildManifest(input: {
  datasetId: number;
  settings: Record<string, unknown> & { maxTokens: number };
  owner: { id: number; name: string };
  source: string;
  stats: ChatStats;
  chats: number;
  examples: { train: number; eval: number };
  names: NameTable;
  redactions: RedactionCounts;
}) {
  const { stats } = input;
  const totalMessages = [...stats.speakers.values()].reduce((a, s) => a + s.messages, 0);
  const totalTokens = [...stats.speakers.values()].reduce((a, s) => a + s.tokens, 0);
  const ranked = [...stats.speakers.entries()].sort((a, b) => b[1].messages - a[1].messages);
  const share = (part: number, whole: number) =>
    whole === 0 ? 0 : Math.round((part / whole) * 10_000) / 10_000;
  const round2 = (value: number) => Math.round(value * 100) / 100;
  return {
    formatVersion: FORMAT_VERSION,
    datasetId: input.datasetId,
    createdAt: new Date().toISOString(),
    source: input.source,
    owner: input.owner,
    settings: input.settings,
    counts: {
      sessions: stats.sessions,
      chats: input.chats,
      examples: input.examples.train + input.examples.eval,
      trainExamples: input.examples.train,
      evalExamples: input.examples.eval,
      messages: stats.messages,
      meanTurnsPerSession: stats.sessions ? round2(stats.turns / stats.sessions) : 0,
      meanMessagesPerSession: stats.sessions ? round2(stats.messages / stats.sessions) : 0,
      tokensEstimate: stats.exampleTokens.reduce((a, b) => a + b, 0),
    },
    speakers: ranked.slice(0, TOP_SPEAKERS).map(([id, s]) => ({
      id,
      name: input.names.get(id) ?? String(id),
      messages: s.messages,
      messageShare: share(s.messages, totalMessages),
      tokenShare: share(s.tokens, totalTokens),
    })),
    otherSpeakers: Math.max(0, ranked.length - TOP_SPEAKERS),
    redactions: input.redactions,
    lengthHistogram: lengthHistogram(stats.exampleTokens, input.settings.maxTokens),
  };
}

/** "15,789 sessions from 466 chats, 8.51 messages per session". */
export function summaryLine(manifest: Manifest): string {
  const n = (value: number) => value.toLocaleString("en-US");
  const c = manifest.counts;
  return `${n(c.sessions)} sessions from ${n(c.chats)} chats, ${c.meanMessagesPerSession.toFixed(2)} messages per session`;
}
