import type { MessageRecord } from "./message.ts";

/**
 * Rows for PostgreSQL's COPY text format (pure). COPY is the fastest bulk path into the server:
 * one round trip per batch, no per-row parameters.
 */

export const messageCopyColumns = [
  "chat_id",
  "message_id",
  "sender_id",
  "sender_name",
  "sent_at",
  "edited_at",
  "kind",
  "text",
  "emoji",
  "reply_to_message_id",
  "forwarded_from_name",
  "forwarded_from_id",
  "via_bot",
  "action",
  "details",
  "source",
  "import_id",
] as const;

const NULL = "\\N";
const specials = /[\\\t\n\r]/;

/** Escapes a value for COPY text: backslash, tab, newline and carriage return. */
export function copyText(value: string): string {
  if (!specials.test(value)) return value;
  return value.replace(/[\\\t\n\r]/g, (char) => {
    switch (char) {
      case "\\":
        return "\\\\";
      case "\t":
        return "\\t";
      case "\n":
        return "\\n";
      default:
        return "\\r";
    }
  });
}

const nullable = (value: string | null): string => (value === null ? NULL : copyText(value));
const number = (value: number | null): string => (value === null ? NULL : String(value));
const time = (value: number | null): string => (value === null ? NULL : isoTime(value));

const DAY_MS = 86_400_000;
/** The years toISOString writes as `YYYY-`: 0000 to 9999. */
const FIRST_FOUR_DIGIT_MS = -62_167_219_200_000; // 0000-01-01
const AFTER_FOUR_DIGIT_MS = 253_402_300_800_000; // 10000-01-01
const pad2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);
const pad3 = (n: number) => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`);
let cachedDay = Number.NaN;
let cachedDayPrefix = "";

/**
 * `new Date(ms).toISOString()`, about ten times faster: a chat's messages fall on few days, so the
 * date is formatted once per day and the time of day by hand (pure; the cache only remembers).
 */
export function isoTime(ms: number): string {
  if (!(ms >= FIRST_FOUR_DIGIT_MS && ms < AFTER_FOUR_DIGIT_MS) || !Number.isInteger(ms))
    return new Date(ms).toISOString();
  const day = Math.floor(ms / DAY_MS);
  if (day !== cachedDay) {
    cachedDay = day;
    cachedDayPrefix = new Date(day * DAY_MS).toISOString().slice(0, 11); // "2021-03-01T"
  }
  let rest = ms - day * DAY_MS;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  return `${cachedDayPrefix}${pad2(hours)}:${pad2(minutes)}:${pad2(seconds)}.${pad3(rest - seconds * 1000)}Z`;
}

/** One line of COPY text for `messageCopyColumns`, newline included. */
export function messageCopyLine(message: MessageRecord, source: string, importId: number | null): string {
  return `${message.chatId}\t${message.messageId}\t${number(message.senderId)}\t${nullable(message.senderName)}\t${time(
    message.sentAt,
  )}\t${time(message.editedAt)}\t${message.kind}\t${copyText(message.text)}\t${nullable(message.emoji)}\t${number(
    message.replyToMessageId,
  )}\t${nullable(message.forwardedFromName)}\t${number(message.forwardedFromId)}\t${nullable(
    message.viaBot,
  )}\t${nullable(message.action)}\t${message.details === null ? NULL : copyText(JSON.stringify(message.details))}\t${source}\t${number(importId)}\n`;
}

/**
 * COPY data collected as UTF-8 bytes in one reusable buffer: no per-batch string join, and the
 * batch lives outside the JS heap, which keeps the importer's memory flat.
 */
export class CopyBuffer {
  private buffer = Buffer.allocUnsafe(1 << 22);
  private used = 0;
  lines = 0;

  append(line: string): void {
    const worst = line.length * 3;
    if (this.used + worst > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.used + worst));
      this.buffer.copy(grown, 0, 0, this.used);
      this.buffer = grown;
    }
    this.used += this.buffer.write(line, this.used, "utf8");
    this.lines++;
  }

  /** The bytes so far; valid until the next `reset()`. */
  contents(): Buffer {
    return this.buffer.subarray(0, this.used);
  }

  reset(): void {
    this.used = 0;
    this.lines = 0;
  }
}
