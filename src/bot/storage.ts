import { eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { botStorage } from "./bot.tables.ts";

/**
 * A key-value storage in PostgreSQL: grammY's `StorageAdapter` for sessions and the conversations
 * plugin's `VersionedStateStorage` share this shape (read, write, delete). Keys are namespaced so
 * sessions, conversations and settings never collide.
 */
export function postgresStorage<T>(db: Db, namespace: string) {
  const keyOf = (key: string) => `${namespace}:${key}`;
  return {
    async read(key: string): Promise<T | undefined> {
      const rows = await db
        .select({ value: botStorage.value })
        .from(botStorage)
        .where(eq(botStorage.key, keyOf(key)));
      return rows[0]?.value as T | undefined;
    },
    async write(key: string, value: T): Promise<void> {
      await db
        .insert(botStorage)
        .values({ key: keyOf(key), value })
        .onConflictDoUpdate({ target: botStorage.key, set: { value, updatedAt: sql`now()` } });
    },
    async delete(key: string): Promise<void> {
      await db.delete(botStorage).where(eq(botStorage.key, keyOf(key)));
    },
  };
}

export type PostgresStorage<T> = ReturnType<typeof postgresStorage<T>>;
