import { eq, sql } from "drizzle-orm";
import type { Db, Transaction } from "../db/client.ts";
import { chats, messages, people } from "./history.tables.ts";

/**
 * What other modules keep that was made from the history (the dataset's examples): each module
 * deletes its own rows, inside the history's transaction, so a forget is all or nothing.
 */
export type ForgetDependents = {
  forgetChat(transaction: Transaction, chatId: number): Promise<void>;
  forgetAll(transaction: Transaction): Promise<void>;
};

/** Deletes what the store holds of a personal chat: its messages, the chat, and what was made from them. */
export async function forgetPersonalChat(
  db: Db,
  personId: number,
  dependents: ForgetDependents,
): Promise<{ messages: number }> {
  return db.transaction(async (transaction) => {
    await dependents.forgetChat(transaction, personId);
    const deleted = await transaction.delete(messages).where(eq(messages.chatId, personId));
    await transaction.delete(chats).where(eq(chats.id, personId));
    return { messages: deleted.rowCount ?? 0 };
  });
}

/** Deletes every chat, message, person but the owner, and what was made from them. */
export async function forgetEverything(db: Db, dependents: ForgetDependents): Promise<{ messages: number }> {
  return db.transaction(async (transaction) => {
    await dependents.forgetAll(transaction);
    const deleted = await transaction.delete(messages);
    await transaction.delete(chats);
    await transaction.delete(people).where(sql`${people.id} <> coalesce((SELECT person_id FROM owner), 0)`);
    return { messages: deleted.rowCount ?? 0 };
  });
}
