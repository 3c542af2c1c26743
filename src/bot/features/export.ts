import { type Conversation, createConversation } from "@grammyjs/conversations";
import { Composer, type Context, InlineKeyboard, InputFile } from "grammy";
import QRCode from "qrcode";
import { createHistoryRepository } from "../../history/history.repository.ts";
import type { AuthClient } from "../../userbot/auth.ts";
import { pullCursorReader } from "../../userbot/cursors.ts";
import type { Logins, Outcome } from "../../userbot/logins.ts";
import { PullPausedError, pullHistory, type TelegramHistoryClient } from "../../userbot/pull.ts";
import type { SessionStore } from "../../userbot/session-store.ts";
import type { BotContext } from "../context.ts";
import { progressBar } from "../jobs.ts";
import type { BotServices } from "../services.ts";

/** What the userbot needs; present when TWIN_API_ID, TWIN_API_HASH and TWIN_SESSION_KEY are set. */
export type Userbot = {
  logins: Logins;
  sessions: SessionStore;
  /** A connected history client on a stored session. */
  historyClient: (session: string) => Promise<TelegramHistoryClient & { disconnect(): Promise<void> }>;
  /** An auth client on a stored session (for /logout). */
  authClient: (session: string) => AuthClient;
};

const SUBMITTED = "kp:submitted";
const PASSWORD_CANCEL = "login:cancel";
const QR_POLL_MS = 1000;
/** A QR picture is replaced this long before its token expires. */
const QR_REFRESH_MARGIN_MS = 3000;

/** The inline keypad the login code is typed on: it never travels as a message. */
export function keypad(): InlineKeyboard {
  const keyboard = new InlineKeyboard();
  for (const row of [
    ["1", "2", "3"],
    ["4", "5", "6"],
    ["7", "8", "9"],
    ["⌫", "0", "✓"],
  ]) {
    for (const key of row) keyboard.text(key, `kp:${key === "⌫" ? "del" : key === "✓" ? "ok" : key}`);
    keyboard.row();
  }
  return keyboard;
}

/**
 * In front of the conversations plugin: the code's digits and the 2FA password are taken here
 * and handed to the login in memory. The conversation (stored in PostgreSQL with every update it
 * waited for) only ever sees "kp:submitted" and a masked text.
 */
export function loginSecrets(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const userbot = services.userbot;
  if (!userbot) return composer;
  const owner = composer.filter((ctx) => ctx.role === "owner");
  owner.callbackQuery(/^kp:(\d|del|ok)$/, async (ctx, next) => {
    const key = ctx.match[1] as string;
    if (userbot.logins.stage(ctx.from.id) !== "code")
      return ctx.answerCallbackQuery({ text: "No code is expected now." });
    if (key !== "ok") {
      const shown = userbot.logins.press(ctx.from.id, key);
      await ctx.answerCallbackQuery();
      await ctx.editMessageText(`Code: ${shown || "…"}`, { reply_markup: keypad() }).catch(() => undefined);
      return;
    }
    await ctx.answerCallbackQuery({ text: "Checking…" });
    await userbot.logins.submitCode(ctx.from.id);
    // The conversation resumes on a callback that carries nothing of the code.
    (ctx.update.callback_query as { data: string }).data = SUBMITTED;
    await next();
  });
  // While the password is awaited, every text is the password, "/…" included: it is never a command.
  owner.on("message:text", async (ctx, next) => {
    if (userbot.logins.stage(ctx.from.id) !== "password") return next();
    const password = ctx.msg.text;
    await ctx.deleteMessage().catch((error) => services.log.error("deleting the password message", error));
    await userbot.logins.submitPassword(ctx.from.id, password);
    const message = ctx.update.message as { text: string; entities?: unknown };
    message.text = "(password received and deleted)";
    delete message.entities;
    await next();
  });
  return composer;
}

function outcomeText(outcome: Outcome): string {
  switch (outcome.status) {
    case "code_invalid":
      return "That code is wrong. Type it again:";
    case "code_expired":
      return "That code expired; Telegram is sending a new one.";
    case "password_invalid":
      return "That password is wrong. Send it again (I delete it right away), or press Cancel.";
    case "flood_wait":
      return `Telegram asks to wait ${outcome.seconds} s before trying again. /export later.`;
    case "phone_invalid":
      return "Telegram does not know that phone number. Send it with the country code, e.g. +44…";
    case "failed":
      return `The login failed: ${outcome.reason}. /export to try again.`;
    default:
      return "";
  }
}

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
                historyRepository: createHistoryRepository(services.database),
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
            return `${summary.messages.toLocaleString("en-US")} messages from ${summary.chats} chats (${summary.new} new).`;
          } catch (error) {
            if (!(error instanceof PullPausedError)) throw error;
            report(`paused: Telegram asks to wait ${error.seconds} s; resuming by itself`);
            await new Promise((resolve) => setTimeout(resolve, error.seconds * 1000));
          }
        }
      } finally {
        await client.disconnect().catch(() => undefined);
      }
    });

  /**
   * Sends the QR code as a picture with a Done button, and swaps the picture for a fresh one as
   * tokens expire, until the login leaves the QR step. Runs outside the conversation: the token
   * never enters its state.
   */
  const showQr = async (ownerId: number, chatId: number): Promise<Outcome> => {
    const outcome = await userbot.logins.startQr(ownerId);
    const url = userbot.logins.qrUrl(ownerId);
    if (outcome.status !== "qr_waiting" || !url) return outcome;
    const done = new InlineKeyboard().text("Done", "qr:done");
    const caption =
      "Scan this with Telegram on your phone: Settings → Devices → Link Desktop Device. Then press Done.";
    const picture = async (link: string) =>
      new InputFile(await QRCode.toBuffer(link, { width: 512 }), "login.png");
    const sent = await services.api.sendPhoto(chatId, await picture(url), { caption, reply_markup: done });
    let shown = url;
    let expiresAt = outcome.expiresAt;
    let busy = false;
    const refresher = setInterval(async () => {
      if (userbot.logins.stage(ownerId) !== "qr") return clearInterval(refresher);
      if (busy || Date.now() < expiresAt - QR_REFRESH_MARGIN_MS) return;
      busy = true;
      const next = await userbot.logins.checkQr(ownerId).finally(() => {
        busy = false;
      });
      const link = userbot.logins.qrUrl(ownerId);
      if (next.status !== "qr_waiting" || !link || link === shown) return;
      shown = link;
      expiresAt = next.expiresAt;
      await services.api
        .editMessageMedia(
          chatId,
          sent.message_id,
          { type: "photo", media: await picture(link), caption },
          { reply_markup: done },
        )
        .catch((error) => services.log.error("refreshing the login QR code", error));
    }, QR_POLL_MS);
    refresher.unref();
    return outcome;
  };

  async function login(conversation: Conversation<BotContext, Context>, ctx: Context) {
    const ownerId = ctx.from?.id as number;
    await ctx.reply(
      "To pull your history I log in as you (a “userbot”). Send your phone number with the country code, or share your contact — or log in with a QR code. /cancel stops.",
      { reply_markup: new InlineKeyboard().text("Log in with a QR code", "login:qr") },
    );
    let outcome: Outcome;
    for (;;) {
      const answer = await conversation.waitFor(["message:text", "message:contact", "callback_query:data"], {
        otherwise: (other) => other.reply("Send your phone number, or /cancel."),
      });
      if (answer.callbackQuery?.data === "login:qr") {
        await answer.answerCallbackQuery();
        outcome = await conversation.external(() => showQr(ownerId, answer.chat?.id as number));
        while (outcome.status === "qr_waiting") {
          await conversation.waitForCallbackQuery("qr:done", {
            otherwise: (other) => other.reply("Scan the QR code, then press Done — or /cancel."),
          });
          outcome = await conversation.external(() => userbot.logins.checkQr(ownerId));
          if (outcome.status === "qr_waiting") {
            await ctx.reply("Not scanned yet: scan the code above with your phone, then press Done.");
          }
        }
        break;
      }
      if (!answer.msg) continue;
      const phone = (answer.msg.contact?.phone_number ?? answer.msg.text ?? "").replace(/[\s()-]/g, "");
      if (!/^\+?\d{7,15}$/.test(phone)) {
        await answer.reply("That does not look like a phone number. Send it like +441234567890.");
        continue;
      }
      outcome = await conversation.external(() =>
        userbot.logins.start(ownerId, phone.startsWith("+") ? phone : `+${phone}`),
      );
      if (outcome.status === "code_sent") break;
      await answer.reply(outcomeText(outcome));
      if (outcome.status !== "phone_invalid") return;
    }
    let prompt =
      "Telegram sent you a login code. Type it on these buttons — never as a message (Telegram would then block it):";
    while (outcome.status === "code_sent" || outcome.status === "code_invalid") {
      await ctx.reply(prompt, { reply_markup: keypad() });
      await conversation.waitForCallbackQuery(SUBMITTED, {
        otherwise: (other) => other.reply("Type the code on the buttons above, or /cancel."),
      });
      outcome = await conversation.external(() => userbot.logins.outcome(ownerId));
      if (outcome.status === "code_invalid") {
        prompt = outcomeText(outcome);
        continue;
      }
      if (outcome.status === "code_expired") {
        await ctx.reply(outcomeText(outcome));
        outcome = await conversation.external(() => userbot.logins.resend(ownerId));
        if (outcome.status !== "code_sent") break;
        prompt = "Type the new code:";
        continue;
      }
      break;
    }
    // Any text is taken as the password (even "/cancel"), so leaving is a button here.
    const cancel = new InlineKeyboard().text("Cancel", PASSWORD_CANCEL);
    while (outcome.status === "password_needed" || outcome.status === "password_invalid") {
      await ctx.reply(
        outcome.status === "password_needed"
          ? `Two-step verification is on. Send your password${outcome.hint ? ` (hint: ${outcome.hint})` : ""}; I delete your message as soon as I read it.`
          : outcomeText(outcome),
        { reply_markup: cancel },
      );
      const answer = await conversation.waitFor(["message:text", "callback_query:data"], {
        otherwise: (other) => other.reply("Send your password, or press Cancel."),
      });
      if (answer.callbackQuery) {
        await answer.answerCallbackQuery();
        if (answer.callbackQuery.data !== PASSWORD_CANCEL) continue;
        await conversation.external(() => userbot.logins.cancel(ownerId));
        await answer.reply("Cancelled: the userbot is not logged in. /export to start again.");
        return;
      }
      outcome = await conversation.external(() => userbot.logins.outcome(ownerId));
    }
    if (outcome.status !== "logged_in") {
      await ctx.reply(outcomeText(outcome));
      return;
    }
    await ctx.reply(
      "Logged in. Your session is stored encrypted; /logout ends it. Pulling your history now.",
    );
    await conversation.external(() => startPull(ctx.chat?.id as number));
  }

  // Registered before the commands that enter it: middleware order is registration order.
  composer.use(createConversation(login, "login"));
  const owner = composer.filter((ctx) => ctx.role === "owner");
  owner.command("export", async (ctx) => {
    if (await userbot.sessions.exists(services.ownerId)) {
      startPull(ctx.chat.id);
      return;
    }
    await ctx.conversation.enter("login");
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
