import { and, asc, desc, eq, inArray, isNull, lte, or, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { botMessages } from "./bot.tables.ts";

export type ConversationMode = "friend" | "talk";
export type StoredMessage = { id: number; fromTwin: boolean; text: string; sentAt: Date };
/** A conversation: one person, one mode, one chat (a group's id; none for a private chat). */
export type ConversationRef = { personId: number; mode: ConversationMode; groupId?: number | undefined };

const storedColumns = {
  id: botMessages.id,
  fromTwin: botMessages.fromTwin,
  text: botMessages.text,
  sentAt: botMessages.sentAt,
};

const where = ({ personId, mode, groupId }: ConversationRef) =>
  and(
    eq(botMessages.personId, personId),
    eq(botMessages.mode, mode),
    groupId === undefined ? isNull(botMessages.groupId) : eq(botMessages.groupId, groupId),
  );

const columnsOf = ({ personId, mode, groupId }: ConversationRef) => ({
  personId,
  mode,
  groupId: groupId ?? null,
});

/** The bot's own conversations (see bot.tables.ts for how a message waits to be answered or sent). */
export function createBotMessagesRepository({ db }: { db: Db }) {
  return {
    /** Stores what a person wrote; undefined when this update was already stored (a redelivery). */
    async addIncoming(
      ref: ConversationRef,
      text: string,
      updateId: number,
      options: { answered?: boolean } = {},
    ): Promise<number | undefined> {
      const rows = await db
        .insert(botMessages)
        .values({
          ...columnsOf(ref),
          fromTwin: false,
          text,
          updateId,
          answeredAt: options.answered ? sql`now()` : null,
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
        .where(and(where(ref), eq(botMessages.fromTwin, false), isNull(botMessages.answeredAt)))
        .orderBy(asc(botMessages.id));
    },
    /** The latest `limit` messages of a conversation, oldest first. */
    async recent(ref: ConversationRef, limit: number): Promise<StoredMessage[]> {
      const rows = await db
        .select(storedColumns)
        .from(botMessages)
        .where(where(ref))
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
          .where(
            and(
              where(ref),
              eq(botMessages.fromTwin, false),
              isNull(botMessages.answeredAt),
              lte(botMessages.id, upTo),
            ),
          );
        if (messages.length === 0) return [];
        const rows = await tx
          .insert(botMessages)
          .values(messages.map((text) => ({ ...columnsOf(ref), fromTwin: true, text, servedBy })))
          .returning({ id: botMessages.id });
        return rows.map((row) => row.id);
      });
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
          or(
            and(eq(botMessages.fromTwin, false), isNull(botMessages.answeredAt)),
            and(eq(botMessages.fromTwin, true), isNull(botMessages.telegramMessageId)),
          ),
        );
      return rows.map((row) => ({
        personId: row.personId,
        mode: row.mode,
        groupId: row.groupId ?? undefined,
      }));
    },
    async count(ref: ConversationRef): Promise<number> {
      const rows = await db.select({ n: sql<number>`count(*)::int` }).from(botMessages).where(where(ref));
      return rows[0]?.n ?? 0;
    },
    /** Deletes the bot's conversations with these people (all of them when `personIds` is undefined). */
    async forget(personIds: number[] | undefined): Promise<number> {
      const rows = await db
        .delete(botMessages)
        .where(personIds ? inArray(botMessages.personId, personIds) : undefined)
        .returning({ id: botMessages.id });
      return rows.length;
    },
  };
}

export type BotMessagesRepository = ReturnType<typeof createBotMessagesRepository>;
