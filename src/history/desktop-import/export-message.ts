import { DateTime } from "luxon";
import type { MessageKind } from "../history.tables.ts";
import { markExportPeer } from "../identity.ts";
import type { MessageRecord } from "../message.ts";
import { MessageShapeError } from "./import.errors.ts";

/**
 * Parsing one message object of a Telegram Desktop export (pure). Both export formats:
 * the current one (`date_unixtime`, `text_entities`, `from_id: "user123"`) and the older one
 * (only the exporter's local `date`, `from_id` sometimes a bare integer).
 */

/**
 * The fields we read, and their types. Checked by hand rather than with a schema library: this
 * runs once per message, millions of times per import, and a schema pass cost ~10% of the import.
 */
export type ExportMessage = {
  id: number;
  type: string;
  date?: string;
  date_unixtime?: string | number;
  edited?: string;
  edited_unixtime?: string | number;
  from?: string | null;
  from_id?: string | number | null;
  actor?: string | null;
  actor_id?: string | number | null;
  text?: string | (string | { text: string })[];
  media_type?: string;
  sticker_emoji?: string;
  reply_to_message_id?: number;
  forwarded_from?: string | null;
  forwarded_from_id?: string | number | null;
  via_bot?: string;
  action?: string;
  [field: string]: unknown;
};

type FieldType = "string" | "integer" | "id" | "unix" | "nullableString" | "text";
const fieldTypes: Record<string, FieldType> = {
  date: "string",
  date_unixtime: "unix",
  edited: "string",
  edited_unixtime: "unix",
  from: "nullableString",
  from_id: "id",
  actor: "nullableString",
  actor_id: "id",
  text: "text",
  media_type: "string",
  sticker_emoji: "string",
  reply_to_message_id: "integer",
  forwarded_from: "nullableString",
  forwarded_from_id: "id",
  via_bot: "string",
  action: "string",
};
const expectations: Record<FieldType, string> = {
  string: "a string",
  integer: "an integer",
  id: 'an id such as "user123", an integer or null',
  unix: "a unix time (digits)",
  nullableString: "a string or null",
  text: "a string or an array of strings and {text} entities",
};

function hasType(value: unknown, type: FieldType): boolean {
  switch (type) {
    case "string":
      return typeof value === "string";
    case "integer":
      return Number.isSafeInteger(value);
    case "id":
      return value === null || typeof value === "string" || Number.isSafeInteger(value);
    case "unix":
      return typeof value === "string" ? /^\d+$/.test(value) : Number.isSafeInteger(value);
    case "nullableString":
      return value === null || typeof value === "string";
    case "text":
      return (
        typeof value === "string" ||
        (Array.isArray(value) &&
          value.every(
            (part) => typeof part === "string" || typeof (part as { text?: unknown })?.text === "string",
          ))
      );
  }
}

/** Returns the message typed, or the first problem as text. */
function checkShape(value: unknown): ExportMessage | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "expected a message object";
  const raw = value as Record<string, unknown>;
  if (!Number.isSafeInteger(raw.id))
    return `field "id": expected an integer, got ${JSON.stringify(raw.id ?? null)}`;
  if (typeof raw.type !== "string")
    return `field "type": expected a string, got ${JSON.stringify(raw.type ?? null)}`;
  for (const field in raw) {
    const type = fieldTypes[field];
    if (type && raw[field] !== undefined && !hasType(raw[field], type)) {
      return `field "${field}": expected ${expectations[type]}, got ${JSON.stringify(raw[field]).slice(0, 80)}`;
    }
  }
  return raw as ExportMessage;
}

export type ParseContext = { chatId: number; timeZone: string };

/** "(File not included. Change data exporting settings to download.)" and its siblings: never a path. */
export function isFilePlaceholder(value: string): boolean {
  return value.startsWith("(File ") || value.startsWith("(Photo ");
}

/** Entities flattened to their plain text: links, mentions, bold… all become what the reader saw. */
export function flattenText(text: ExportMessage["text"]): string {
  if (text === undefined) return "";
  if (typeof text === "string") return text;
  let plain = "";
  for (const part of text) plain += typeof part === "string" ? part : part.text;
  return plain;
}

const mediaKinds: Record<string, MessageKind> = {
  sticker: "sticker",
  voice_message: "voice",
  video_message: "video_message",
  video_file: "video",
  animation: "animation",
  audio_file: "audio",
};

/** Dates a message can carry: PostgreSQL and JavaScript hold more, but nothing outside this is a real date. */
const EARLIEST = 0;
const LATEST = Date.UTC(9999, 11, 31, 23, 59, 59);

function toMillis(
  unix: string | number | undefined,
  local: string | undefined,
  timeZone: string,
): number | null {
  if (unix !== undefined) return Number(unix) * 1000;
  if (local === undefined) return null;
  const parsed = DateTime.fromISO(local, { zone: timeZone });
  return parsed.isValid ? parsed.toMillis() : Number.NaN;
}

function kindOf(raw: ExportMessage): MessageKind {
  if (raw.type === "service") return "service";
  if (raw.type === "unsupported") return "unsupported";
  if (raw.media_type && mediaKinds[raw.media_type]) return mediaKinds[raw.media_type] as MessageKind;
  if (raw.photo !== undefined) return "photo";
  if (raw.poll !== undefined) return "poll";
  if (raw.contact_information !== undefined) return "contact";
  if (raw.location_information !== undefined) return raw.place_name || raw.address ? "venue" : "location";
  if (raw.game_title !== undefined) return "game";
  if (raw.invoice_information !== undefined) return "invoice";
  if (raw.dice !== undefined) return "dice";
  if (raw.giveaway_information !== undefined) return "giveaway";
  if (raw.file !== undefined || raw.media_type !== undefined) return "file";
  return "text";
}

/** Fields worth keeping per kind; anything absent is left out so equal messages give equal JSON. */
const detailFields = new Set([
  "file_name",
  "file_size",
  "mime_type",
  "duration_seconds",
  "width",
  "height",
  "poll",
  "location_information",
  "place_name",
  "address",
  "game_title",
  "invoice_information",
  "dice",
  "title",
  "new_title",
  "members",
  "inviter",
  "message_id",
  "reply_to_peer_id",
  "saved_from",
  "media_type",
]);

function detailsOf(raw: ExportMessage, kind: MessageKind): Record<string, unknown> | null {
  let details: Record<string, unknown> | null = null;
  for (const field in raw) {
    const value = raw[field];
    if (detailFields.has(field) && value !== undefined && value !== null) {
      details ??= {};
      details[field] = value;
    }
  }
  const contact = raw.contact_information as Record<string, unknown> | undefined;
  if (contact) {
    // The contact's name is what a conversation shows; their phone number stays out of the store.
    details ??= {};
    details.contact = { first_name: contact.first_name, last_name: contact.last_name };
  }
  const file = kind === "photo" ? raw.photo : raw.file;
  if (typeof file === "string") {
    details ??= {};
    if (isFilePlaceholder(file)) details.file_included = false;
    else details.path = file;
  }
  return details;
}

/** Parses one export message of chat `context.chatId`; throws MessageShapeError on a wrong shape. */
export function parseExportMessage(value: unknown, context: ParseContext): MessageRecord {
  const raw = checkShape(value);
  if (typeof raw === "string") {
    const id = (value as { id?: unknown } | null)?.id;
    throw new MessageShapeError(Number.isSafeInteger(id) ? (id as number) : undefined, raw);
  }
  const sentAt = toMillis(raw.date_unixtime, raw.date, context.timeZone);
  if (sentAt === null || Number.isNaN(sentAt)) {
    throw new MessageShapeError(
      raw.id,
      `field "date": expected a date, got ${JSON.stringify(raw.date ?? null)}`,
    );
  }
  const editedAt = toMillis(raw.edited_unixtime, raw.edited, context.timeZone);
  for (const [field, millis] of [
    [raw.date_unixtime !== undefined ? "date_unixtime" : "date", sentAt],
    [raw.edited_unixtime !== undefined ? "edited_unixtime" : "edited", editedAt],
  ] as const) {
    if (millis !== null && !(millis >= EARLIEST && millis <= LATEST)) {
      const given = field.endsWith("unixtime") ? raw[field] : raw[field as "date" | "edited"];
      throw new MessageShapeError(
        raw.id,
        `field "${field}": ${JSON.stringify(given)} is not a date between 1970 and 9999`,
      );
    }
  }
  const kind = kindOf(raw);
  const isService = kind === "service";
  const senderRef = isService ? raw.actor_id : raw.from_id;
  const forwardedRef = raw.forwarded_from_id;
  return {
    chatId: context.chatId,
    messageId: raw.id,
    senderId: senderRef === undefined || senderRef === null ? null : (markExportPeer(senderRef) ?? null),
    senderName: (isService ? raw.actor : raw.from) ?? null,
    sentAt,
    editedAt: editedAt === null || Number.isNaN(editedAt) ? null : editedAt,
    kind,
    text: flattenText(raw.text),
    emoji: kind === "sticker" ? (raw.sticker_emoji ?? null) : kind === "dice" ? diceEmoji(raw.dice) : null,
    replyToMessageId: raw.reply_to_message_id ?? null,
    // A forward whose author the export does not name (`"forwarded_from": null`) keeps an empty
    // name: it is still a forward (see isForwarded).
    forwardedFromName: "forwarded_from" in raw ? (raw.forwarded_from ?? "") : null,
    forwardedFromId:
      forwardedRef === undefined || forwardedRef === null ? null : (markExportPeer(forwardedRef) ?? null),
    viaBot: raw.via_bot ?? null,
    action: raw.action ?? null,
    details: detailsOf(raw, kind),
  };
}

function diceEmoji(dice: unknown): string | null {
  const emoticon = (dice as { emoticon?: unknown } | undefined)?.emoticon;
  return typeof emoticon === "string" ? emoticon : null;
}
