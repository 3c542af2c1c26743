import { IM_END, IM_START } from "./chatml.ts";

/**
 * Token counts without a tokenizer (pure), conservative — over rather than under — for the
 * scripts BPE vocabularies serve worst. The larger of two counts:
 *
 * - prose: ASCII at ~3 characters a token, other letters (Cyrillic, Arabic, …) at one token each,
 *   emoji and other astral characters at three;
 * - dense text (numbers, hashes, URLs, paths, pasted logs, accented Latin, CJK), which the prose
 *   count undercounts by up to 40% (an IRC paste of sensor readings: 199 estimated, 324 real
 *   SmolLM2 tokens): every digit is a token, and so is a space before one (llama.cpp's and the
 *   trainer's pre-tokenizers split digits apart), a run of other ASCII symbols one per 2, a control
 *   character one, a run of ASCII letters one per 4 (a new run at each lower-to-upper case change,
 *   where BPE merges stop), <|im_start|> and <|im_end|> one, accented Latin two a character, other
 *   BMP characters three and astral ones four (their UTF-8 bytes, which no byte-level BPE exceeds).
 *
 * The margin is in the counts themselves: on the IRC fixture the longest example is 64–88% of
 * --max-tokens in real tokens (128 to 1024), because prose costs ~4.5 letters a token, not 3 or 4,
 * and a template token or `>>> ` costs one, not several. Still a heuristic: a long run of text no
 * BPE vocabulary has seen (keyboard mashing, base64) can cost up to twice its count; a real
 * tokenizer (--tokenizer) is exact.
 */
export function estimateTokens(text: string): number {
  let ascii = 0;
  let other = 0;
  let dense = 0;
  let letters = 0;
  let symbols = 0;
  let spaces = 0;
  let previous = 0;
  const endRuns = () => {
    dense += Math.ceil(letters / 4) + Math.ceil(symbols / 2);
    letters = 0;
    symbols = 0;
  };
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x3c && (text.startsWith(IM_START, i) || text.startsWith(IM_END, i))) {
      // A template token: one token, as the trainer and llama.cpp both parse it.
      const length = text.startsWith(IM_START, i) ? IM_START.length : IM_END.length;
      endRuns();
      dense++;
      ascii += length;
      i += length - 1;
      previous = 0;
      continue;
    }
    const upper = code >= 0x41 && code <= 0x5a;
    if (upper || (code >= 0x61 && code <= 0x7a)) {
      if (symbols > 0 || (upper && previous >= 0x61 && previous <= 0x7a)) endRuns();
      letters++;
    } else if (code > 0x20 && code < 0x7f && (code < 0x30 || code > 0x39)) {
      if (letters > 0) endRuns();
      symbols++;
    } else {
      endRuns();
      if (code === 0x20) {
        const next = text.charCodeAt(i + 1);
        // A space merges into the word after it, not into a digit (digits stand alone).
        if (previous === 0x20) spaces++;
        else if (next >= 0x30 && next <= 0x39) dense++;
      } else if (code < 0x80) dense++;
      else if (code <= 0x24f) dense += 2;
      else if (code < 0x800) dense++;
      else if (code >= 0xd800 && code <= 0xdbff) dense += 4;
      else dense += 3;
    }
    previous = code;
    if (code < 0x80) ascii++;
    else if (code >= 0xd800 && code <= 0xdbff) {
      other += 3;
      i++;
    } else other++;
  }
  endRuns();
  return Math.max(Math.ceil(ascii / 3) + other, dense + Math.ceil(spaces / 2));
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
