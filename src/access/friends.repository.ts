import { and, eq, inArray, isNull, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { friends, optOuts } from "./access.tables.ts";

export function createFriendsRepository({ db }: Pick<Database, "db">) {
  return {
    /** Allows a person (again, if they were revoked: then they are introduced again, too). */
    async allow(personId: number): Promise<void> {
      await db
        .insert(friends)
        .values({ personId })
        .onConflictDoUpdate({
          target: friends.personId,
          set: {
            allowedAt: sql`now()`,
            revokedAt: null,
            introducedAt: sql`CASE WHEN ${friends.revokedAt} IS NULL THEN ${friends.introducedAt} END`,
          },
        });
    },
    /**
     * Records that the bot introduced itself to this friend: true the first time (the caller then
     * sends the introduction), false once it was done, and for someone who is not a friend.
     */
    async introduce(personId: number): Promise<boolean> {
      const rows = await db
        .update(friends)
        .set({ introducedAt: sql`now()` })
        .where(and(eq(friends.personId, personId), isNull(friends.introducedAt)))
        .returning({ id: friends.personId });
      return rows.length > 0;
    },
    /** The owner reset these friends (all when undefined): the bot introduces itself to them again. */
    async forgetIntroductions(personIds: number[] | undefined): Promise<void> {
      await db
        .update(friends)
        .set({ introducedAt: null })
        .where(personIds ? inArray(friends.personId, personIds) : undefined);
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
