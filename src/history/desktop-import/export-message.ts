import { DateTime } from "luxon";
import { z } from "zod";
import type { MessageKind } from "../history.tables.ts";
import { markExportPeer } from "../identity.ts";
import type { MessageRecord } from "../message.ts";

/**
 * Parsing one message object of a Telegram Desktop export (pure). Both export formats:
 * the current one (`date_unixtime`, `text_entities`, `from_id: "user123"`) and the older one
 * (only the exporter's local `date`, `from_id` sometimes a bare integer).
 */

const textPart = z.union([z.string(), z.looseObject({ text: z.string() })]);

const exportMessageSchema = z.looseObject({
  id: z.number().int(),
  type: z.string(),
  date: z.string().optional(),
  date_unixtime: z.union([z.string().regex(/^\d+$/), z.number().int()]).optional(),
  edited: z.string().optional(),
  edited_unixtime: z.union([z.string().regex(/^\d+$/), z.number().int()]).optional(),
  from: z.string().nullable().optional(),
  from_id: z.union([z.string(), z.number()]).nullable().optional(),
  actor: z.string().nullable().optional(),
  actor_id: z.union([z.string(), z.number()]).nullable().optional(),
  text: z.union([z.string(), z.array(textPart)]).optional(),
  media_type: z.string().optional(),
  sticker_emoji: z.string().optional(),
  reply_to_message_id: z.number().int().optional(),
  forwarded_from: z.string().nullable().optional(),
  forwarded_from_id: z.union([z.string(), z.number()]).nullable().optional(),
  via_bot: z.string().optional(),
  action: z.string().optional(),
});

export type ExportMessage = z.infer<typeof exportMessageSchema>;

/** A message object that does not have the export's shape; `field` and `expected` say what is wrong. */
export class MessageShapeError extends Error {
  readonly messageId: number | undefined;
  constructor(messageId: number | undefined, problem: string) {
    super(problem);
    this.name = "MessageShapeError";
    this.messageId = messageId;
  }
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

function toMillis(unix: string | number | undefined, local: string | undefined, timeZone: string): number | null {
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
const detailFields = [
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
] as const;

function detailsOf(raw: ExportMessage, kind: MessageKind): Record<string, unknown> | null {
  const details: Record<string, unknown> = {};
  for (const field of detailFields) {
    const value = raw[field];
    if (value !== undefined && value !== null) details[field] = value;
  }
  const contact = raw.contact_information as Record<string, unknown> | undefined;
  if (contact) {
    // The contact's name is what a conversation shows; their phone number stays out of the store.
    details.contact = { first_name: contact.first_name, last_name: contact.last_name };
  }
  const file = kind === "photo" ? raw.photo : raw.file;
  if (typeof file === "string") {
    if (isFilePlaceholder(file)) details.file_included = false;
    else details.path = file;
  }
  return Object.keys(details).length > 0 ? details : null;
}

/** Parses one export message of chat `context.chatId`; throws MessageShapeError on a wrong shape. */
export function parseExportMessage(value: unknown, context: ParseContext): MessageRecord {
  const result = exportMessageSchema.safeParse(value);
  if (!result.success) {
    const id = (value as { id?: unknown } | null)?.id;
    const issue = result.error.issues[0];
    const field = issue?.path.join(".") || "message";
    throw new MessageShapeError(
      typeof id === "number" ? id : undefined,
      `field "${field}": ${issue?.message ?? "invalid"}`,
    );
  }
  const raw = result.data;
  const sentAt = toMillis(raw.date_unixtime, raw.date, context.timeZone);
  if (sentAt === null || Number.isNaN(sentAt)) {
    throw new MessageShapeError(raw.id, `field "date": expected a date, got ${JSON.stringify(raw.date ?? null)}`);
  }
  const editedAt = toMillis(raw.edited_unixtime, raw.edited, context.timeZone);
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
    forwardedFromName: raw.forwarded_from ?? null,
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
