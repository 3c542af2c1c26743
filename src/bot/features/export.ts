import { Composer } from "grammy";
import { plural } from "../../plural.ts";
import { pullCursorReader } from "../../userbot/cursors.ts";
import { pullHistory } from "../../userbot/pull.ts";
import type { Userbot } from "../../userbot/setup.ts";
import { PullPausedError } from "../../userbot/userbot.errors.ts";
import type { BotContext } from "../context.ts";
import { progressBar } from "../jobs.ts";
import { LOGIN_CONVERSATION, loginConversation } from "../login/login-conversation.ts";
import type { BotServices } from "../services.ts";

/** `/export`: log the userbot in (a conversation) if needed, then pull the history as a job; `/logout`. */
export function exportHistory(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  if (!services.userbot) {
    composer
      .filter((ctx) => ctx.role === "owner")
      .command(["export", "logout"], (ctx) =>
        ctx.reply(
          "The userbot is not set up: set TWIN_API_ID and TWIN_API_HASH (from my.telegram.org) and TWIN_SESSION_KEY.",
        ),
      );
    return composer;
  }
  const userbot: Userbot = services.userbot;

  const startPull = (chatId: number) =>
    services.jobs.start(chatId, "Pulling your history", async ({ signal, report }) => {
      const session = await userbot.sessions.load(services.ownerId);
      if (!session) throw new Error("not logged in: /export to log in");
      const client = await userbot.historyClient(session);
      const started = Date.now();
      try {
        for (;;) {
          try {
            const summary = await pullHistory(
              client,
              {
                historyRepository: services.history,
                cursors: pullCursorReader(services.database.db),
              },
              {
                ownerId: services.ownerId,
                paceMs: 300,
                signal,
                onProgress: (p) =>
                  report(
                    `${progressBar(p.chatsDone, p.chatsTotal)} · ${p.chatsDone}/${p.chatsTotal} chats · ${p.messages.toLocaleString("en-US")} messages` +
                      ` · ${Math.round(p.messages / Math.max(1, (Date.now() - started) / 1000))} messages/s` +
                      (p.chat ? ` · ${p.chat}` : "") +
                      (p.floodWaitSeconds ? ` · waited ${p.floodWaitSeconds} s for Telegram` : "") +
                      (p.notice ? `\n${p.notice}` : ""),
                  ),
              },
            );
            return `${plural(summary.messages, "message", { grouped: true })} from ${plural(summary.chats, "chat")} (${summary.new} new).`;
          } catch (error) {
            if (!(error instanceof PullPausedError)) throw error;
            report(`paused: Telegram asks to wait ${error.seconds} s; resuming by itself`);
            await new Promise((resolve) => setTimeout(resolve, error.seconds * 1000));
          }
        }
      } finally {
        await client.disconnect().catch(() => undefined);
        // Whatever it stored, finished or stopped partway, goes into the memory index.
        services.memoryIndexer.request();
      }
    });

  // Registered before the commands that enter it: middleware order is registration order.
  composer.use(loginConversation(services, userbot, startPull));
  const owner = composer.filter((ctx) => ctx.role === "owner");
  owner.command("export", async (ctx) => {
    if (await userbot.sessions.exists(services.ownerId)) {
      startPull(ctx.chat.id);
      return;
    }
    await ctx.conversation.enter(LOGIN_CONVERSATION);
  });
  owner.command("logout", async (ctx) => {
    const session = await userbot.sessions.load(services.ownerId).catch(() => undefined);
    if (!session && !(await userbot.sessions.exists(services.ownerId)))
      return ctx.reply("The userbot is not logged in.");
    if (session) {
      const client = userbot.authClient(session);
      await client.logOut().catch((error) => services.log.error("logging the userbot out", error));
      await client.disconnect().catch(() => undefined);
    }
    await userbot.sessions.delete(services.ownerId);
    await ctx.reply("Logged out at Telegram, and the stored session is deleted.");
  });
  return composer;
}
