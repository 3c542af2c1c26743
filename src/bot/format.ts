import type { Transformer } from "grammy";
import type { MessageEntity } from "grammy/types";

const CODE = /`([^`]+)`/g;
/** A fenced block, ```lang … ```; one cut off before its closing fence (a reply at its token cap) runs to the end. */
const FENCE = /```([\w+-]*)[^\S\n]*\n?([\s\S]*?)(?:```|$)/g;
/** Backticks with nothing between them: no code to mark, only marks Telegram would show. */
const EMPTY_MARKS = /``+/g;

/**
 * A text's code as Telegram entities (pure): ```…``` blocks as `pre` (with their language), `…`
 * spans as `code`; the backticks go. Undefined when the text has none. Offsets are UTF-16 code
 * units, as Telegram counts them.
 */
export function codeEntities(text: string): { text: string; entities: MessageEntity[] } | undefined {
  if (!text.includes("`")) return undefined;
  const entities: MessageEntity[] = [];
  let out = "";
  const inline = (part: string) => {
    let from = 0;
    for (const match of part.matchAll(CODE)) {
      const code = match[1] as string;
      out += part.slice(from, match.index).replace(EMPTY_MARKS, "");
      entities.push({ type: "code", offset: out.length, length: code.length });
      out += code;
      from = match.index + match[0].length;
    }
    out += part.slice(from).replace(EMPTY_MARKS, "");
  };
  let from = 0;
  for (const match of text.matchAll(FENCE)) {
    inline(text.slice(from, match.index));
    const code = (match[2] as string).replace(/\n$/, "");
    if (code.length > 0) {
      const language = match[1] as string;
      entities.push({
        type: "pre",
        offset: out.length,
        length: code.length,
        ...(language ? { language } : {}),
      });
      out += code;
    }
    from = match.index + match[0].length;
    if (match[0].length === 0) break;
  }
  inline(text.slice(from));
  // Nothing left but the marks (a reply of one fence): sent as it is, Telegram refuses an empty text.
  if ((out === text && entities.length === 0) || out.trim() === "") return undefined;
  return { text: out, entities };
}

const TEXT_METHODS = new Set(["sendMessage", "editMessageText"]);
const CAPTION_METHODS = new Set([
  "sendPhoto",
  "sendDocument",
  "sendVideo",
  "sendAnimation",
  "sendAudio",
  "sendVoice",
  "editMessageCaption",
]);

/**
 * Texts are written with `…` around commands and code to type; sent as they are, Telegram would
 * show the backticks. This sends every plain text or caption (no parse mode, no entities of its
 * own) with those spans as code entities instead, whoever wrote it: a feature, an error message,
 * the twin (as Telegram's own clients turn a person's `…` into code).
 */
export const codeAsEntities = (): Transformer => (prev, method, payload, signal) => {
  const fields = payload as Record<string, unknown>;
  if (fields.parse_mode) return prev(method, payload, signal);
  const [textKey, entitiesKey] = TEXT_METHODS.has(method)
    ? ["text", "entities"]
    : CAPTION_METHODS.has(method)
      ? ["caption", "caption_entities"]
      : [undefined, undefined];
  const text = textKey ? fields[textKey] : undefined;
  if (typeof text !== "string" || (entitiesKey && fields[entitiesKey])) return prev(method, payload, signal);
  const coded = codeEntities(text);
  if (!coded) return prev(method, payload, signal);
  return prev(
    method,
    { ...fields, [textKey as string]: coded.text, [entitiesKey as string]: coded.entities } as typeof payload,
    signal,
  );
};
