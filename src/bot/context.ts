import type { ConversationFlavor } from "@grammyjs/conversations";
import type { Context, SessionFlavor } from "grammy";

/** Per-chat session (stored in PostgreSQL): only the owner's chat keeps anything. */
export type SessionData = {
  /** While set, the owner is talking to this simulated friend (`/talk`, ended by `/stop`). */
  talk?: { personId: number; name: string } | undefined;
};

export type Role = "owner" | "friend" | "stranger";

export type BotContext = ConversationFlavor<Context & SessionFlavor<SessionData> & { role: Role }>;
