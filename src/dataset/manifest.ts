import { plural } from "../plural.ts";
import type { Canary } from "./canary.ts";
import { FORMAT_VERSION } from "./chatml.ts";
import type { ChatStats } from "./examples.ts";
import type { NameTable } from "./names.ts";
import type { RedactionCounts } from "./redact.ts";

/**
 * A dataset's manifest; `canary` when one was planted (canary.ts); `memory` when examples carry
 * recalled windows (memory-examples.ts): how many examples got a memory turn, its windows and tokens.
 */
export type Manifest = ReturnType<typeof buildManifest> & {
  canary?: Canary;
  memory?: { examples: number; windows: number; tokens: number };
};

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

/**
 * The `fraction` percentile (nearest rank) of a histogram of lengths (length → count); null when
 * it is empty.
 */
export function histogramPercentile(histogram: ReadonlyMap<number, number>, fraction: number): number | null {
  const lengths = [...histogram.entries()].filter(([, count]) => count > 0).sort((a, b) => a[0] - b[0]);
  const total = lengths.reduce((sum, [, count]) => sum + count, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(fraction * total));
  let seen = 0;
  for (const [length, count] of lengths) {
    seen += count;
    if (seen >= rank) return length;
  }
  return (lengths.at(-1) as [number, number])[0];
}

const TURN_PERCENTILE = 0.95;

/**
 * The 95th percentile of a speaker's turn length in tokens, as the dataset measured it (the
 * owner's, or one of the top speakers'); undefined when the manifest does not say (a speaker
 * outside the top, a manifest from before it was measured).
 */
export function turnTokensP95(
  manifest: Pick<Manifest, "owner" | "speakers">,
  speakerId: number,
): number | undefined {
  const measured =
    manifest.owner.id === speakerId
      ? manifest.owner.turnTokensP95
      : manifest.speakers.find((s) => s.id === speakerId)?.turnTokensP95;
  return typeof measured === "number" ? measured : undefined; // older manifests lack it
}

/**
 * What a dataset is: its settings, source, counts, per-speaker shares, turn lengths (95th
 * percentile, tokens: what a reply imitating the speaker may take) and length histogram (pure).
 */
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
    owner: {
      ...input.owner,
      turnTokensP95: histogramPercentile(
        stats.speakers.get(input.owner.id)?.turnTokens ?? new Map(),
        TURN_PERCENTILE,
      ),
    },
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
      /** Marker lines in kept sessions (markers.ts): forward runs, reply quotes, polls, turns cut to fit. */
      markers: { ...stats.markers },
    },
    speakers: ranked.slice(0, TOP_SPEAKERS).map(([id, s]) => ({
      id,
      name: input.names.get(id) ?? String(id),
      messages: s.messages,
      messageShare: share(s.messages, totalMessages),
      tokenShare: share(s.tokens, totalTokens),
      turnTokensP95: histogramPercentile(s.turnTokens, TURN_PERCENTILE),
    })),
    otherSpeakers: Math.max(0, ranked.length - TOP_SPEAKERS),
    redactions: input.redactions,
    lengthHistogram: lengthHistogram(stats.exampleTokens, input.settings.maxTokens),
  };
}

/** "15,789 sessions from 466 chats, 8.51 messages per session". */
export function summaryLine(manifest: Manifest): string {
  const c = manifest.counts;
  const grouped = { grouped: true };
  return `${plural(c.sessions, "session", grouped)} from ${plural(c.chats, "chat", grouped)}, ${c.meanMessagesPerSession.toFixed(2)} messages per session`;
}
