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
const time = (value: number | null): string => (value === null ? NULL : new Date(value).toISOString());

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
