import { bigint, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** How far the userbot has pulled each chat: the newest message id stored (committed with it). */
export const pullCursors = pgTable("pull_cursors", {
  chatId: bigint("chat_id", { mode: "number" }).primaryKey(),
  lastMessageId: bigint("last_message_id", { mode: "number" }).notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/** The owner's gramjs session, sealed (session-seal.ts): never stored, logged or shown in clear. */
export const userbotSessions = pgTable("userbot_sessions", {
  ownerId: bigint("owner_id", { mode: "number" }).primaryKey(),
  sealed: text("sealed").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
