import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { openSession, sealSession } from "./session-seal.ts";
import { SealedSessionError } from "./userbot.errors.ts";
import { userbotSessions } from "./userbot.tables.ts";

/** The owner's userbot session in PostgreSQL, sealed with TWIN_SESSION_KEY. */
export function createSessionStore(db: Db, key: Buffer | undefined) {
  const needKey = () => {
    if (!key)
      throw new SealedSessionError(
        "TWIN_SESSION_KEY is not set: the userbot session cannot be sealed or opened",
      );
    return key;
  };
  return {
    async save(ownerId: number, session: string): Promise<void> {
      const sealed = sealSession(session, needKey(), ownerId);
      await db
        .insert(userbotSessions)
        .values({ ownerId, sealed })
        .onConflictDoUpdate({ target: userbotSessions.ownerId, set: { sealed, createdAt: new Date() } });
    },
    async load(ownerId: number): Promise<string | undefined> {
      const rows = await db
        .select({ sealed: userbotSessions.sealed })
        .from(userbotSessions)
        .where(eq(userbotSessions.ownerId, ownerId));
      const sealed = rows[0]?.sealed;
      return sealed === undefined ? undefined : openSession(sealed, needKey(), ownerId);
    },
    async exists(ownerId: number): Promise<boolean> {
      const rows = await db
        .select({ id: userbotSessions.ownerId })
        .from(userbotSessions)
        .where(eq(userbotSessions.ownerId, ownerId));
      return rows.length > 0;
    },
    async delete(ownerId: number): Promise<void> {
      await db.delete(userbotSessions).where(eq(userbotSessions.ownerId, ownerId));
    },
  };
}

export type SessionStore = ReturnType<typeof createSessionStore>;
