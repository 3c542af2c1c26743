/**
 * Markers (pure): the few fixed lines that say what a message is when its text alone would
 * mislead — words someone else wrote (a forward), the message a reply answers, a poll, a message
 * cut short. The dataset renders history with them and the bot renders friends' live messages with
 * the same functions, so what the model serves matches what it trained on. Each marker is a whole
 * `>>> ` line of its own (a poll's is the message's own line), so segments still split on line
 * boundaries (see chatml.ts).
 */

/** How many characters of the replied-to message a reply marker quotes. */
export const REPLY_QUOTE_CHARS = 60;
/** The line after a message cut to fit the token budget. */
export const TRUNCATED = "… [truncated]";
/** The name a marker gives an author nobody named (a hidden or deleted account). */
export const UNKNOWN_AUTHOR = "someone";

/** One line, whatever it was given: line breaks and runs of spaces become one space. */
function oneLine(text: string): string {
  return text.replace(/\s+/gu, " ").trim();
}

/** `[forwarded from NAME]`: the lines after it are someone else's words, never trained. */
export function forwardMarker(author: string | null | undefined): string {
  return `[forwarded from ${oneLine(author ?? "") || UNKNOWN_AUTHOR}]`;
}

/** `[reply to NAME: "first 60 characters…"]`, right before the replying message. */
export function replyMarker(author: string | null | undefined, quoted: string): string {
  const text = oneLine(quoted);
  const chars = [...text]; // code points: a quote never ends in half an emoji
  const quote =
    chars.length > REPLY_QUOTE_CHARS ? `${chars.slice(0, REPLY_QUOTE_CHARS).join("").trimEnd()}…` : text;
  return `[reply to ${oneLine(author ?? "") || UNKNOWN_AUTHOR}: "${quote}"]`;
}

/** `[poll] QUESTION — OPTION / OPTION / …`: the poll as the message's text. */
export function pollText(question: string, options: readonly string[]): string {
  const answers = options.map(oneLine).filter(Boolean);
  return `[poll] ${oneLine(question)}${answers.length > 0 ? ` — ${answers.join(" / ")}` : ""}`;
}

/** The poll a stored message's `details` describe (both importers store `{question, answers}`). */
export function pollFromDetails(details: unknown): { question: string; options: string[] } | undefined {
  const poll = (details as { poll?: unknown } | null | undefined)?.poll ?? details;
  if (!poll || typeof poll !== "object") return undefined;
  const { question, answers } = poll as { question?: unknown; answers?: unknown };
  if (typeof question !== "string") return undefined;
  const options = Array.isArray(answers)
    ? answers
        .map((answer) => (typeof answer === "string" ? answer : (answer as { text?: unknown })?.text))
        .filter((text): text is string => typeof text === "string")
    : [];
  return { question, options };
}

/**
 * `text` cut at a word boundary to at most `budget` tokens (`text` itself when it fits); the
 * caller shows `… [truncated]` on the line after it. Binary search over the length, so a 1 MB
 * message costs a few dozen token counts.
 */
export function truncateToTokens(
  text: string,
  budget: number,
  tokenize: (text: string) => number,
): { text: string; truncated: boolean } {
  if (tokenize(text) <= budget) return { text, truncated: false };
  let low = 0;
  let high = text.length;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (tokenize(cutAtWord(text, middle)) <= budget) low = middle;
    else high = middle - 1;
  }
  return { text: cutAtWord(text, low), truncated: true };
}

/** The first `length` characters of `text`, backed off to the last space when that cuts a word. */
function cutAtWord(text: string, length: number): string {
  let cut = text.slice(0, length);
  // Never half a surrogate pair.
  if (/[\uD800-\uDBFF]$/u.test(cut)) cut = cut.slice(0, -1);
  if (length < text.length && /\S/u.test(text[length] ?? "")) {
    const space = cut.search(/\s\S*$/u);
    if (space > 0) cut = cut.slice(0, space);
  }
  return cut.trimEnd();
}
