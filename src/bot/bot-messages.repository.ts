import { and, asc, desc, eq, inArray, isNull, like, lte, or, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { botMessages, botStorage } from "./bot.tables.ts";

export type ConversationMode = "friend" | "talk";
export type StoredMessage = {
  id: number;
  fromTwin: boolean;
  text: string;
  sentAt: Date;
  /** The marker line shown before a person's message (bot.tables.ts); none when absent. */
  marker?: string | null | undefined;
  /** The message's id in its Telegram chat: a twin message once it is sent (what a reply points at). */
  telegramMessageId?: number | null | undefined;
};
/** A conversation: one person, one mode, one chat (a group's id; none for a private chat). */
export type ConversationRef = { personId: number; mode: ConversationMode; groupId?: number | undefined };

/**
 * A conversation whose latest message got no reply because the model said nothing, every
 * generation, or only repeated a recent reply (the replier's), until a reply is stored there: for
 * the owner's /status and /log.
 */
export type NoReply = ConversationRef & {
  /** The person's last message that went unanswered. */
  messageId: number;
  /** "empty": nothing, every generation; "repeat": only a recent reply again, resampled too. */
  reason: NoReplyReason;
  /** What was serving ("base", "adapter:<id>"). */
  servedBy: string | null;
  at: Date;
};

/** Where a conversation's no-reply outcome is kept (the bot's key-value table, see storage.ts). */
const NO_REPLY = "no-reply:";
const noReplyKey = ({ personId, mode, groupId }: ConversationRef) =>
  `${NO_REPLY}${mode}:${personId}${groupId === undefined ? "" : `@${groupId}`}`;
export type NoReplyReason = "empty" | "repeat";
type NoReplyValue = {
  reason: NoReplyReason;
  personId: number;
  mode: ConversationMode;
  groupId: number | null;
  messageId: number;
  servedBy: string | null;
  at: string;
};

const storedColumns = {
  id: botMessages.id,
  fromTwin: botMessages.fromTwin,
  text: botMessages.text,
  sentAt: botMessages.sentAt,
  marker: botMessages.marker,
  telegramMessageId: botMessages.telegramMessageId,
};

const where = ({ personId, mode, groupId }: ConversationRef) =>
  and(
    eq(botMessages.personId, personId),
    eq(botMessages.mode, mode),
    groupId === undefined ? isNull(botMessages.groupId) : eq(botMessages.groupId, groupId),
  );

/**
 * A person's message the twin has to answer: not answered yet, and neither held back by the rate
 * limit nor skipped over the backlog cap (bot.tables.ts).
 */
const awaitingAnswer = and(
  eq(botMessages.fromTwin, false),
  isNull(botMessages.answeredAt),
  eq(botMessages.held, false),
  eq(botMessages.skipped, false),
);
/** What the twin sees of a conversation: everything but what is held or skipped. */
const seen = and(eq(botMessages.held, false), eq(botMessages.skipped, false));

/** How many of a friend's messages wait, over all their conversations (the rate limit's gate). */
export type Backlog = {
  /** Stored and not answered, held ones included (skipped ones are never answered). */
  unanswered: number;
  /** Held back by the rate limit. */
  held: number;
  /** Whether their latest message was skipped (its note is already out). */
  lastSkipped: boolean;
};

const columnsOf = ({ personId, mode, groupId }: ConversationRef) => ({
  personId,
  mode,
  groupId: groupId ?? null,
});

/** The bot's own conversations (see bot.tables.ts for how a message waits to be answered or sent). */
export function createBotMessagesRepository({ db }: { db: Db }) {
  return {
    /**
     * Stores what a person wrote; undefined when this update was already stored (a redelivery).
     * `held`: over the rate limit, given to the twin later (`release`); `skipped`: never answered;
     * `marker`: the line the prompt shows before the text (a forward's or a reply's, incoming-text.ts).
     */
    async addIncoming(
      ref: ConversationRef,
      text: string,
      updateId: number,
      options: { answered?: boolean; held?: boolean; skipped?: boolean; marker?: string | null } = {},
    ): Promise<number | undefined> {
      const rows = await db
        .insert(botMessages)
        .values({
          ...columnsOf(ref),
          fromTwin: false,
          text,
          marker: options.marker ?? null,
          updateId,
          answeredAt: options.answered ? sql`now()` : null,
          held: options.held ?? false,
          skipped: options.skipped ?? false,
        })
        .onConflictDoNothing()
        .returning({ id: botMessages.id });
      return rows[0]?.id;
    },
    /** The person's messages still waiting for an answer, oldest first. */
    async pending(ref: ConversationRef): Promise<StoredMessage[]> {
      return db
        .select(storedColumns)
        .from(botMessages)
        .where(and(where(ref), awaitingAnswer))
        .orderBy(asc(botMessages.id));
    },
    /** The latest `limit` messages of a conversation as the twin saw it (nothing held or skipped), oldest first. */
    async recent(ref: ConversationRef, limit: number): Promise<StoredMessage[]> {
      const rows = await db
        .select(storedColumns)
        .from(botMessages)
        .where(and(where(ref), seen))
        .orderBy(desc(botMessages.id))
        .limit(limit);
      return rows.reverse();
    },
    /**
     * Stores the twin's reply and marks the person's messages up to `upTo` answered, in one
     * transaction: the reply is then sent from what is stored. Returns the new messages' ids.
     */
    async storeReply(
      ref: ConversationRef,
      upTo: number,
      messages: string[],
      servedBy: string | null = null,
    ): Promise<number[]> {
      return db.transaction(async (tx) => {
        await tx
          .update(botMessages)
          .set({ answeredAt: sql`now()` })
          .where(and(where(ref), awaitingAnswer, lte(botMessages.id, upTo)));
        if (messages.length === 0) return [];
        await tx.delete(botStorage).where(eq(botStorage.key, noReplyKey(ref))); // answered after all
        const rows = await tx
          .insert(botMessages)
          .values(messages.map((text) => ({ ...columnsOf(ref), fromTwin: true, text, servedBy })))
          .returning({ id: botMessages.id });
        return rows.map((row) => row.id);
      });
    },
    /**
     * The model gave no reply to the person's messages up to `upTo` (`reason`): they are marked
     * answered (not asked again, as people leave a message unanswered) and the conversation is kept
     * as one without a reply (`withoutReply`) until a reply is stored there.
     */
    async storeNoReply(
      ref: ConversationRef,
      upTo: number,
      servedBy: string | null,
      reason: NoReplyReason,
    ): Promise<void> {
      await db.transaction(async (tx) => {
        await tx
          .update(botMessages)
          .set({ answeredAt: sql`now()` })
          .where(and(where(ref), awaitingAnswer, lte(botMessages.id, upTo)));
        const value: NoReplyValue = {
          reason,
          ...columnsOf(ref),
          messageId: upTo,
          servedBy,
          at: new Date().toISOString(),
        };
        await tx
          .insert(botStorage)
          .values({ key: noReplyKey(ref), value })
          .onConflictDoUpdate({ target: botStorage.key, set: { value, updatedAt: sql`now()` } });
      });
    },
    /** Conversations whose latest messages got no reply from the model (see `storeNoReply`), latest first. */
    async withoutReply(): Promise<NoReply[]> {
      const rows = await db
        .select({ value: botStorage.value })
        .from(botStorage)
        .where(like(botStorage.key, `${NO_REPLY}%`));
      return rows
        .map(({ value }) => {
          const v = value as NoReplyValue;
          return {
            personId: v.personId,
            mode: v.mode,
            groupId: v.groupId ?? undefined,
            messageId: v.messageId,
            reason: v.reason ?? "empty",
            servedBy: v.servedBy,
            at: new Date(v.at),
          };
        })
        .sort((a, b) => b.at.getTime() - a.at.getTime());
    },
    /** Twin messages stored but not yet sent (a restart in the middle of a reply). */
    async unsent(ref: ConversationRef): Promise<StoredMessage[]> {
      return db
        .select(storedColumns)
        .from(botMessages)
        .where(and(where(ref), eq(botMessages.fromTwin, true), isNull(botMessages.telegramMessageId)))
        .orderBy(asc(botMessages.id));
    },
    async markSent(id: number, telegramMessageId: number): Promise<void> {
      await db
        .update(botMessages)
        .set({ telegramMessageId, sentAt: sql`now()` })
        .where(eq(botMessages.id, id));
    },
    /** Conversations with something left to answer or to send. */
    async unfinished(): Promise<ConversationRef[]> {
      const rows = await db
        .selectDistinct({
          personId: botMessages.personId,
          mode: botMessages.mode,
          groupId: botMessages.groupId,
        })
        .from(botMessages)
        .where(
          or(awaitingAnswer, and(eq(botMessages.fromTwin, true), isNull(botMessages.telegramMessageId))),
        );
      return rows.map((row) => ({
        personId: row.personId,
        mode: row.mode,
        groupId: row.groupId ?? undefined,
      }));
    },
    /** A friend's waiting messages over all their conversations (mode `friend`). */
    async backlog(personId: number): Promise<Backlog> {
      const { rows } = await db.execute<{ unanswered: number; held: number; last_skipped: boolean | null }>(
        sql`SELECT count(*) FILTER (WHERE answered_at IS NULL AND NOT skipped)::int AS unanswered,
                   count(*) FILTER (WHERE held)::int AS held,
                   (SELECT skipped FROM bot_messages
                    WHERE person_id = ${personId} AND mode = 'friend' AND NOT from_twin
                    ORDER BY sent_at DESC, id DESC LIMIT 1) AS last_skipped
            FROM bot_messages WHERE person_id = ${personId} AND mode = 'friend' AND NOT from_twin`,
      );
      const row = rows[0];
      return {
        unanswered: row?.unanswered ?? 0,
        held: row?.held ?? 0,
        lastSkipped: row?.last_skipped ?? false,
      };
    },
    /**
     * Gives a friend's `count` oldest held messages to the twin: each takes the next id, so it
     * follows what the twin already answered. Returns how many, and the conversations they belong to.
     */
    async release(personId: number, count: number): Promise<{ released: number; refs: ConversationRef[] }> {
      return db.transaction(async (tx) => {
        const held = await tx
          .select({ id: botMessages.id, mode: botMessages.mode, groupId: botMessages.groupId })
          .from(botMessages)
          .where(
            and(
              eq(botMessages.personId, personId),
              eq(botMessages.mode, "friend"),
              eq(botMessages.held, true),
            ),
          )
          .orderBy(asc(botMessages.id))
          .limit(count);
        const refs = new Map<string, ConversationRef>();
        for (const row of held) {
          // One row at a time, oldest first: the new ids keep their order.
          await tx
            .update(botMessages)
            .set({ held: false, id: sql`nextval(pg_get_serial_sequence('bot_messages', 'id'))` })
            .where(eq(botMessages.id, row.id));
          refs.set(String(row.groupId), { personId, mode: row.mode, groupId: row.groupId ?? undefined });
        }
        return { released: held.length, refs: [...refs.values()] };
      });
    },
    /** Friends with messages held back by the rate limit (a restart gives them to the twin). */
    async heldPeople(): Promise<number[]> {
      const rows = await db
        .selectDistinct({ personId: botMessages.personId })
        .from(botMessages)
        .where(eq(botMessages.held, true));
      return rows.map((row) => row.personId);
    },
    async count(ref: ConversationRef): Promise<number> {
      const rows = await db.select({ n: sql<number>`count(*)::int` }).from(botMessages).where(where(ref));
      return rows[0]?.n ?? 0;
    },
    /** Deletes the bot's conversations with these people (all of them when `personIds` is undefined). */
    async forget(personIds: number[] | undefined): Promise<number> {
      return db.transaction(async (tx) => {
        const rows = await tx
          .delete(botMessages)
          .where(personIds ? inArray(botMessages.personId, personIds) : undefined)
          .returning({ id: botMessages.id });
        const outcomes = await tx
          .select({ key: botStorage.key, value: botStorage.value })
          .from(botStorage)
          .where(like(botStorage.key, `${NO_REPLY}%`));
        const forgotten = outcomes
          .filter(({ value }) => !personIds || personIds.includes((value as NoReplyValue).personId))
          .map(({ key }) => key);
        if (forgotten.length > 0) await tx.delete(botStorage).where(inArray(botStorage.key, forgotten));
        return rows.length;
      });
    },
  };
}

export type BotMessagesRepository = ReturnType<typeof createBotMessagesRepository>;
