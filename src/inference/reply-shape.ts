import { IM_END, IM_START, MESSAGE_PREFIX } from "../dataset/chatml.ts";
import { type Manifest, turnTokensP95 } from "../dataset/manifest.ts";

/**
 * The shape of a served reply (pure): how long it may be, where a generated turn really ends (a
 * role line, a control string written as text), how a turn cut by the token limit is taken back to
 * its last complete message or sentence, and when a reply repeats one the conversation already had.
 */

/** The shortest default reply limit, whatever the imitated speaker's turns measure. */
export const MIN_REPLY_TOKENS = 48;
/** Generations one reply may take: the first, and retries when one says nothing. */
export const MAX_GENERATIONS = 3;
/** A reply is compared with this many of the conversation's latest twin replies. */
export const RECENT_REPLIES = 5;
/** Character-3-gram Jaccard similarity from which a reply counts as a repeat. */
export const REPEAT_THRESHOLD = 0.8;
/** Roles of plain ChatML: an instruct base opens turns with them when it loses the format. */
export const CHATML_ROLES = ["user", "assistant", "system"] as const;

/**
 * The longest reply, in tokens, when imitating a speaker whose turns' 95th percentile is `p95`
 * (from the dataset's manifest): never under MIN_REPLY_TOKENS, never over `cap`
 * (TWIN_MAX_REPLY_TOKENS); without a measurement, the cap alone.
 */
export function replyTokenLimit(p95: number | null | undefined, cap: number): number {
  if (p95 === null || p95 === undefined || !Number.isFinite(p95) || p95 <= 0) return cap;
  return Math.min(cap, Math.max(MIN_REPLY_TOKENS, Math.ceil(p95)));
}

/** The lines that open another turn: the speakers' names and the plain ChatML roles. */
export function roleLines(speakers: readonly string[]): string[] {
  return [...new Set([...speakers.map((s) => s.trim()).filter((s) => s.length > 0), ...CHATML_ROLES])];
}

/**
 * Where the generated turn really ends: at a control string the model wrote as plain text, or at
 * a line that is only a speaker's name (or a ChatML role) followed by a newline — the header of a
 * turn the model went on to write for someone else. Message lines (`>>> `) are never role lines;
 * the generic roles match in any case, names exactly.
 */
export function cutAtTurnEnd(body: string, speakers: readonly string[]): { body: string; cut: boolean } {
  let end = body.length;
  for (const control of [IM_START, IM_END]) {
    const at = body.indexOf(control);
    if (at >= 0 && at < end) end = at;
  }
  const names = new Set(speakers.map((s) => s.trim()).filter((s) => s.length > 0));
  const generic = new Set<string>(CHATML_ROLES);
  const isRole = (line: string) => {
    const trimmed = line.trim();
    return trimmed.length > 0 && (names.has(trimmed) || generic.has(trimmed.toLowerCase()));
  };
  let offset = 0;
  while (offset < end) {
    const newline = body.indexOf("\n", offset);
    if (newline < 0 || newline >= end) break; // the last line has no newline: not a header
    const line = body.slice(offset, newline);
    if (!line.startsWith(MESSAGE_PREFIX.trimEnd()) && isRole(line)) {
      end = offset;
      break;
    }
    offset = newline + 1;
  }
  return end === body.length ? { body, cut: false } : { body: body.slice(0, end), cut: true };
}

/** A sentence's end: its punctuation, any closing quotes or brackets, then a space or the end. */
const SENTENCE_END = /[.!?…]+["'”’»)\]]*(?=\s|$)/gu;
const WORDS = /[\p{L}\p{N}]/u;

const withoutPrefix = (line: string) =>
  line.startsWith(MESSAGE_PREFIX.trimEnd()) ? line.slice(MESSAGE_PREFIX.trimEnd().length) : line;
const hasWords = (lines: string) => lines.split("\n").some((line) => WORDS.test(withoutPrefix(line)));

/**
 * A turn the token limit stopped, cut back (pure): to the last complete sentence of the line the
 * limit cut; else to the complete lines (messages) before that line; else, for a lone unfinished
 * message, to its last whole word (a word the limit may have cut is dropped, and so is punctuation
 * left hanging after the last one). Never mid-word; empty when nothing complete is left.
 */
export function cutToComplete(body: string): string {
  const lastBreak = body.lastIndexOf("\n");
  const head = body.slice(0, lastBreak + 1);
  const tail = body.slice(lastBreak + 1);
  let sentenceEnd = -1;
  for (const match of tail.matchAll(SENTENCE_END)) sentenceEnd = match.index + match[0].length;
  if (sentenceEnd > 0 && WORDS.test(withoutPrefix(tail.slice(0, sentenceEnd)))) {
    return head + tail.slice(0, sentenceEnd);
  }
  if (hasWords(head)) return head.replace(/\s+$/u, "");
  const lastSpace = tail.search(/\s\S*$/u);
  if (lastSpace < 0) return "";
  const words = tail.slice(0, lastSpace).replace(/[\s,;:\-–—(/&]+$/u, "");
  return WORDS.test(withoutPrefix(words)) ? words : "";
}

/** How many tokens of a reply it must not repeat a resample's context may end with before it is stopped. */
export const COPY_RUN = 3;

/**
 * The tokens a resample may not take next (pure): when the last COPY_RUN tokens of `context` run as
 * in one of `sources` (the replies it must not repeat, as token ids), the source's next token — and
 * the one after it, because node-llama-cpp 3 lets the sampler read a sequence's tokens one token
 * late (a decoded token joins `contextTokens` only after the logits it gave were sampled). Short
 * runs stay free — common words and phrases — but no reply can be copied whole.
 */
export function copyingTokens(context: readonly number[], sources: readonly (readonly number[])[]): number[] {
  if (context.length < COPY_RUN) return [];
  const tail = context.slice(-COPY_RUN);
  const banned = new Set<number>();
  for (const source of sources) {
    for (let i = 0; i + COPY_RUN < source.length; i++) {
      let same = true;
      for (let j = 0; j < COPY_RUN && same; j++) same = source[i + j] === tail[j];
      if (!same) continue;
      banned.add(source[i + COPY_RUN] as number);
      if (i + COPY_RUN + 1 < source.length) banned.add(source[i + COPY_RUN + 1] as number);
    }
  }
  return [...banned];
}

/** Character 3-grams of a text, lower-cased with runs of whitespace as one space. */
function trigrams(text: string): Set<string> {
  const chars = [...text.toLowerCase().replace(/\s+/gu, " ").trim()];
  const grams = new Set<string>();
  if (chars.length === 0) return grams;
  if (chars.length < 3) grams.add(chars.join(""));
  for (let i = 0; i + 3 <= chars.length; i++) grams.add(chars.slice(i, i + 3).join(""));
  return grams;
}

/** Jaccard similarity of two texts' character-3-gram sets, 0 to 1; 0 when either is empty. */
export function trigramSimilarity(a: string, b: string): number {
  const left = trigrams(a);
  const right = trigrams(b);
  if (left.size === 0 || right.size === 0) return 0;
  let shared = 0;
  for (const gram of left) if (right.has(gram)) shared++;
  return shared / (left.size + right.size - shared);
}

/** The highest similarity of `reply` to any of `recent` (0 with none). */
export function closestRepeat(reply: string, recent: readonly string[]): number {
  return recent.reduce((best, earlier) => Math.max(best, trigramSimilarity(reply, earlier)), 0);
}

/** Whether `reply` repeats one of the conversation's recent replies (the latest RECENT_REPLIES). */
export function repeatsRecent(reply: string, recent: readonly string[]): boolean {
  return closestRepeat(reply, recent.slice(-RECENT_REPLIES)) >= REPEAT_THRESHOLD;
}

/**
 * The longest reply when imitating `speaker` — the dataset owner (the twin answering a friend) or
 * a person by id (the twin playing a friend in /talk) — from the dataset's `manifest`, capped by
 * `cap`; without a dataset or a measurement for them, `cap` alone.
 */
export function imitatedReplyTokens(
  manifest: Pick<Manifest, "owner" | "speakers"> | undefined,
  speaker: "owner" | number | undefined,
  cap: number,
): number {
  if (!manifest?.owner || speaker === undefined) return cap;
  return replyTokenLimit(turnTokensP95(manifest, speaker === "owner" ? manifest.owner.id : speaker), cap);
}
