import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

/** Ids are Bot-API-style marked ids (see identity.ts); -100… channel ids exceed 32 bits. */
const markedId = (name: string) => bigint(name, { mode: "number" });

/** Whose history this database holds; one owner per database. */
export const owner = pgTable(
  "owner",
  {
    singleton: boolean("singleton").primaryKey().default(true),
    personId: markedId("person_id").notNull(),
    name: text("name"),
    /** The owner's IANA time zone: old exports' local times are read in it, dataset headers shown in it. */
    timeZone: text("time_zone").notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [check("owner_singleton", sql`${t.singleton}`)],
);

export const people = pgTable("people", {
  id: markedId("id").primaryKey(),
  /** Display name as last seen; null for deleted accounts. */
  name: text("name"),
  /** When that name was seen, so an older export never overwrites a newer name. */
  nameSeenAt: timestamp("name_seen_at", { withTimezone: true }),
});

export const chats = pgTable("chats", {
  id: markedId("id").primaryKey(),
  /** Export chat type: personal_chat, bot_chat, saved_messages, private_group, private_supergroup, … */
  type: text("type").notNull(),
  title: text("title"),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

export const imports = pgTable("imports", {
  id: serial("id").primaryKey(),
  /** desktop_export or userbot */
  source: text("source").notNull(),
  /** File name only: a full path may reveal the user's folders. */
  fileName: text("file_name"),
  fileBytes: bigint("file_bytes", { mode: "number" }),
  ownerId: markedId("owner_id"),
  /** interrupted: its process died mid-way (no heartbeat); the same import again resumes it. */
  status: text("status", { enum: ["running", "succeeded", "failed", "interrupted"] }).notNull(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
  /** Beaten while it runs: a running import whose heartbeat is stale has lost its process. */
  heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp("finished_at", { withTimezone: true }),
  /** Bytes of the file read and committed so far; a failed import tells how far it got. */
  committedBytes: bigint("committed_bytes", { mode: "number" }).notNull().default(0),
  counts: jsonb("counts").$type<ImportCounts>(),
  error: text("error"),
});

export type ImportCounts = {
  chats: number;
  messages: number;
  new: number;
  updated: number;
  unchanged: number;
  skipped: Record<string, number>;
};

export const messageKinds = [
  "text",
  "sticker",
  "photo",
  "video",
  "video_message",
  "voice",
  "audio",
  "animation",
  "file",
  "poll",
  "location",
  "venue",
  "contact",
  "game",
  "invoice",
  "dice",
  "giveaway",
  "story",
  "service",
  "unsupported",
] as const;
export type MessageKind = (typeof messageKinds)[number];

export const messages = pgTable(
  "messages",
  {
    chatId: markedId("chat_id").notNull(),
    messageId: bigint("message_id", { mode: "number" }).notNull(),
    senderId: markedId("sender_id"),
    /** The sender's name as this message showed it (null: deleted account). */
    senderName: text("sender_name"),
    sentAt: timestamp("sent_at", { withTimezone: true }).notNull(),
    editedAt: timestamp("edited_at", { withTimezone: true }),
    kind: text("kind", { enum: messageKinds }).notNull(),
    /** Plain text: entities flattened; captions of media included. */
    text: text("text").notNull().default(""),
    /** The emoji of a sticker (or dice). */
    emoji: text("emoji"),
    replyToMessageId: bigint("reply_to_message_id", { mode: "number" }),
    forwardedFromName: text("forwarded_from_name"),
    forwardedFromId: markedId("forwarded_from_id"),
    viaBot: text("via_bot"),
    /** Service messages: the action (join_group_by_link, pin_message, …). */
    action: text("action"),
    /** Kind-specific facts: file name and size, duration, poll, coordinates, contact, members, … */
    details: jsonb("details").$type<Record<string, unknown>>(),
    source: text("source", { enum: ["desktop_export", "userbot"] }).notNull(),
    importId: integer("import_id"),
  },
  (t) => [
    primaryKey({ columns: [t.chatId, t.messageId] }),
    index("messages_chat_time").on(t.chatId, t.sentAt),
    // Sender first, then chat: the chats a person wrote in are a skip through this index (memory's privacy rule).
    index("messages_sender").on(t.senderId, t.chatId),
    // Service messages whose member list names people: the other way a person belongs to a chat.
    index("messages_members")
      .using("gin", sql`(${t.details} -> 'members')`)
      .where(sql`${t.kind} = 'service' AND ${t.details} ? 'members'`),
  ],
);
