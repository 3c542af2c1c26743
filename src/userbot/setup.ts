import type { Config } from "../config/config.ts";
import type { Database } from "../db/client.ts";
import { type AuthClient, GramjsAuthClient } from "./auth.ts";
import { connectHistoryClient } from "./gramjs-history.ts";
import { Logins } from "./logins.ts";
import type { TelegramHistoryClient } from "./pull.ts";
import { parseSessionKey } from "./session-seal.ts";
import { createSessionStore, type SessionStore } from "./session-store.ts";
import { SealedSessionError } from "./userbot.errors.ts";

/** What the userbot needs; present when TWIN_API_ID, TWIN_API_HASH and TWIN_SESSION_KEY are set. */
export type Userbot = {
  logins: Logins;
  sessions: SessionStore;
  /** A connected history client on a stored session. */
  historyClient: (session: string) => Promise<TelegramHistoryClient & { disconnect(): Promise<void> }>;
  /** An auth client on a stored session (for /logout). */
  authClient: (session: string) => AuthClient;
};

/**
 * The userbot for the bot's /export, when TWIN_API_ID, TWIN_API_HASH and TWIN_SESSION_KEY are set.
 * A sealed session stored without the key to open it is a clear error at start, not a crash later.
 */
export async function createUserbot(
  config: Config,
  database: Database,
  ownerId: number,
): Promise<Userbot | undefined> {
  const { apiId, apiHash, sessionKey } = config.userbot;
  const key = sessionKey ? parseSessionKey(sessionKey) : undefined;
  const sessions = createSessionStore(database.db, key);
  if (!key && (await sessions.exists(ownerId))) {
    throw new SealedSessionError(
      "a sealed userbot session is stored but TWIN_SESSION_KEY is not set: set the key it was sealed with (or delete the row in userbot_sessions to log in again)",
    );
  }
  if (!apiId || !apiHash || !key) return undefined;
  return {
    logins: new Logins(
      () => new GramjsAuthClient(apiId, apiHash),
      (owner, session) => sessions.save(owner, session),
    ),
    sessions,
    historyClient: (session) => connectHistoryClient(apiId, apiHash, session),
    authClient: (session) => new GramjsAuthClient(apiId, apiHash, session),
  };
}
