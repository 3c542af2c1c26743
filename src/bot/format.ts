import type { Transformer } from "grammy";
import type { MessageEntity } from "grammy/types";

const CODE = /`([^`]+)`/g;

/**
 * A text's `…` spans as Telegram code entities (pure): the backticks go, the span is marked.
 * Undefined when the text has none. Offsets are UTF-16 code units, as Telegram counts them.
 */
export function codeEntities(text: string): { text: string; entities: MessageEntity[] } | undefined {
  const entities: MessageEntity[] = [];
  let out = "";
  let from = 0;
  for (const match of text.matchAll(CODE)) {
    const code = match[1] as string;
    out += text.slice(from, match.index);
    entities.push({ type: "code", offset: out.length, length: code.length });
    out += code;
    from = match.index + match[0].length;
  }
  return entities.length > 0 ? { text: out + text.slice(from), entities } : undefined;
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
