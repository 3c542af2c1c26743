import type { RecalledMessage } from "./retriever.ts";

/** Messages kept on each side of a hit. */
export const WINDOW_BEFORE = 3;
export const WINDOW_AFTER = 3;

/**
 * The window around a hit (pure): up to `before` messages before it and `after` after it, oldest
 * first, cut where the session breaks (a gap longer than `gapMs`), so a window never joins two
 * conversations. `around` is the chat's messages near the hit in time order, the hit among them.
 */
export function windowAround(
  around: RecalledMessage[],
  hitMessageId: number,
  options: { gapMs: number; before?: number; after?: number },
): RecalledMessage[] {
  const at = around.findIndex((message) => message.messageId === hitMessageId);
  if (at < 0) return [];
  const gap = (a: RecalledMessage, b: RecalledMessage) =>
    b.sentAt.getTime() - a.sentAt.getTime() > options.gapMs;
  let first = at;
  while (first > 0 && at - first < (options.before ?? WINDOW_BEFORE)) {
    if (gap(around[first - 1] as RecalledMessage, around[first] as RecalledMessage)) break;
    first--;
  }
  let last = at;
  while (last < around.length - 1 && last - at < (options.after ?? WINDOW_AFTER)) {
    if (gap(around[last] as RecalledMessage, around[last + 1] as RecalledMessage)) break;
    last++;
  }
  return around.slice(first, last + 1);
}

/** A query's words as a tsquery that matches any of them: each quoted, so nothing in it is syntax (pure). */
export function anyOf(lexemes: string[]): string {
  return lexemes.map((lexeme) => `'${lexeme.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`).join(" | ");
}

export type Term = { config: string; lexeme: string; documents: number };

/**
 * The query's words worth searching for, per configuration (pure): the rarest first, as many as
 * fit `budget` matching messages in all, at most `most` of them. A word in a fifth of all messages
 * says nothing about this conversation and would make the search read most of the index.
 */
export function chooseTerms<T extends Term>(terms: T[], options: { budget: number; most: number }): T[] {
  const chosen: T[] = [];
  let documents = 0;
  for (const term of [...terms].sort(
    (a, b) => a.documents - b.documents || a.lexeme.localeCompare(b.lexeme),
  )) {
    if (chosen.length >= options.most || documents + term.documents > options.budget) break;
    chosen.push(term);
    documents += term.documents;
  }
  return chosen;
}
