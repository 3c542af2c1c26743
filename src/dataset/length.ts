/**
 * Token counts without a tokenizer (pure), conservative — over rather than under — for the
 * scripts BPE vocabularies serve worst: ASCII at ~3 characters a token, other letters (Cyrillic,
 * Arabic, …) at one token each, emoji and other astral characters at three.
 */
export function estimateTokens(text: string): number {
  let ascii = 0;
  let other = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) ascii++;
    else if (code >= 0xd800 && code <= 0xdbff) {
      other += 3;
      i++;
    } else other++;
  }
  return Math.ceil(ascii / 3) + other;
}

export type Tokenize = (text: string) => number;

/**
 * Splits a sequence of turns, each with its token count, into pieces of at most `maxTokens` at
 * turn boundaries. Each piece after the first starts with the previous turns' tail (as many as fit
 * in `contextTokens`) as untrained context. A turn longer than the limit stays whole, alone.
 */
export function splitTurns<T>(
  turns: T[],
  tokens: (turn: T) => number,
  options: { maxTokens: number; contextTokens: number; fixedTokens: number },
): { context: T[]; turns: T[] }[] {
  const pieces: { context: T[]; turns: T[] }[] = [];
  let start = 0;
  while (start < turns.length) {
    const context: T[] = [];
    let used = options.fixedTokens;
    if (start > 0) {
      for (let i = start - 1; i >= 0; i--) {
        const cost = tokens(turns[i] as T);
        if (used + cost > options.fixedTokens + options.contextTokens) break;
        context.unshift(turns[i] as T);
        used += cost;
      }
    }
    // The first turn fits beside its context, or the context gives way, oldest first.
    const first = tokens(turns[start] as T);
    while (context.length > 0 && used + first > options.maxTokens) used -= tokens(context.shift() as T);
    let end = start;
    while (end < turns.length) {
      const cost = tokens(turns[end] as T);
      if (end > start && used + cost > options.maxTokens) break;
      used += cost;
      end++;
    }
    pieces.push({ context, turns: turns.slice(start, end) });
    start = end;
  }
  return pieces;
}
