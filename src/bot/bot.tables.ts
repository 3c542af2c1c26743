import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

/** grammY sessions and conversation state: one JSON value per key (see storage.ts). */
export const botStorage = pgTable("bot_storage", {
  key: text("key").primaryKey(),
  value: jsonb("value").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * The bot's own conversations: a friend with the twin (mode `friend`: the twin speaks as the
 * owner) or the owner with a simulated friend (mode `talk`: the twin speaks as that friend), keyed by
 * chat and person: a friend's conversation in a group is not their private one. They are context
 * for the next reply, and `/log` reads them. A person's message waits with
 * `answered_at` unset until the reply is stored; a twin message waits with `telegram_message_id`
 * unset until it is sent — so a restart neither loses nor repeats anything.
 *
 * A friend's message over the rate limit is stored `held`: it waits, unseen by the twin, until the
 * limit lets it through; released, it takes the next id, so ids stay the order in which the twin
 * saw the conversation (`sent_at` keeps when it came). One over the backlog cap is stored
 * `skipped`: kept, never answered, never part of a prompt.
 */
export const botMessages = pgTable(
  "bot_messages",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    /** The friend (a Telegram user id, as in `people`). */
    personId: bigint("person_id", { mode: "number" }).notNull(),
    mode: text("mode", { enum: ["friend", "talk"] }).notNull(),
    /** The group the conversation is in; null: a private chat (the friend's own, or the owner's /talk). */
    groupId: bigint("group_id", { mode: "number" }),
    fromTwin: boolean("from_twin").notNull(),
    text: text("text").notNull(),
    /**
     * A person's message: the marker line the prompt shows before its text (src/dataset/markers.ts) —
     * `[forwarded from NAME]` or `[reply to NAME: "…"]` — as the dataset renders history; null: none.
     */
    marker: text("marker"),
    /** The Telegram update a person's message came in: a redelivered update is stored once. */
    updateId: bigint("update_id", { mode: "number" }),
    telegramMessageId: integer("telegram_message_id"),
    /** For the twin's messages: what spoke — "base", "adapter:<id>" or an adapter file's name. */
    servedBy: text("served_by"),
    sentAt: timestamp("sent_at", { withTimezone: true }).notNull().defaultNow(),
    answeredAt: timestamp("answered_at", { withTimezone: true }),
    /** Over the rate limit: stored, not yet given to the twin (see above). */
    held: boolean("held").notNull().default(false),
    /** Over the backlog cap: stored and never answered. */
    skipped: boolean("skipped").notNull().default(false),
  },
  (t) => [
    index("bot_messages_conversation").on(t.personId, t.mode, t.groupId, t.id),
    uniqueIndex("bot_messages_update").on(t.updateId),
  ],
);
