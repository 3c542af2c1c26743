import type pg from "pg";

/**
 * Deletes what the store holds of a personal chat: its messages, the chat, and the dataset
 * examples made from it (they carry the same text). One transaction: all or nothing.
 */
export async function forgetPersonalChat(pool: pg.Pool, personId: number): Promise<{ messages: number }> {
  return inTransaction(pool, async (client) => {
    await client.query("DELETE FROM dataset_examples WHERE chat_id = $1", [personId]);
    const deleted = await client.query("DELETE FROM messages WHERE chat_id = $1", [personId]);
    await client.query("DELETE FROM chats WHERE id = $1", [personId]);
    return { messages: deleted.rowCount ?? 0 };
  });
}

/** Deletes every chat, message, person but the owner, and every dataset. */
export async function forgetEverything(pool: pg.Pool): Promise<{ messages: number }> {
  return inTransaction(pool, async (client) => {
    await client.query("DELETE FROM datasets"); // examples cascade
    const deleted = await client.query("DELETE FROM messages");
    await client.query("DELETE FROM chats");
    await client.query("DELETE FROM people WHERE id <> coalesce((SELECT person_id FROM owner), 0)");
    return { messages: deleted.rowCount ?? 0 };
  });
}

async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
