import { isNull, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { friends } from "./access.tables.ts";

export function createFriendsRepository({ db }: Pick<Database, "db">) {
  return {
    /** Allows a person (again, if they were revoked). */
    async allow(personId: number): Promise<void> {
      await db
        .insert(friends)
        .values({ personId })
        .onConflictDoUpdate({ target: friends.personId, set: { allowedAt: sql`now()`, revokedAt: null } });
    },
    async revoke(personId: number): Promise<void> {
      await db.update(friends).set({ revokedAt: sql`now()` }).where(sql`${friends.personId} = ${personId}`);
    },
    async allowedIds(): Promise<number[]> {
      const rows = await db.select({ id: friends.personId }).from(friends).where(isNull(friends.revokedAt));
      return rows.map((row) => row.id);
    },
  };
}
