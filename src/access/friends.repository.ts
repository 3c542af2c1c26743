import { and, eq, isNull, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { friends, optOuts } from "./access.tables.ts";

export function createFriendsRepository({ db }: Pick<Database, "db">) {
  return {
    /** Allows a person (again, if they were revoked). */
    async allow(personId: number): Promise<void> {
      await db
        .insert(friends)
        .values({ personId })
        .onConflictDoUpdate({ target: friends.personId, set: { allowedAt: sql`now()`, revokedAt: null } });
    },
    /** Revokes a friend; false when they were not allowed. */
    async revoke(personId: number): Promise<boolean> {
      const rows = await db
        .update(friends)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(friends.personId, personId), isNull(friends.revokedAt)))
        .returning({ id: friends.personId });
      return rows.length > 0;
    },
    async allowedIds(): Promise<number[]> {
      const rows = await db.select({ id: friends.personId }).from(friends).where(isNull(friends.revokedAt));
      return rows.map((row) => row.id);
    },
    async isAllowed(personId: number): Promise<boolean> {
      const rows = await db
        .select({ id: friends.personId })
        .from(friends)
        .where(and(eq(friends.personId, personId), isNull(friends.revokedAt)));
      return rows.length > 0;
    },
    async optOut(personId: number): Promise<void> {
      await db.insert(optOuts).values({ personId }).onConflictDoNothing();
    },
    async optIn(personId: number): Promise<void> {
      await db.delete(optOuts).where(eq(optOuts.personId, personId));
    },
    async optedOutIds(): Promise<number[]> {
      const rows = await db.select({ id: optOuts.personId }).from(optOuts);
      return rows.map((row) => row.id);
    },
  };
}

export type FriendsRepository = ReturnType<typeof createFriendsRepository>;
