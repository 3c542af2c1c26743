import { Composer } from "grammy";
import type { BotContext } from "../context.ts";
import type { BotServices } from "../services.ts";
import { CODE_SUBMITTED, KEYPAD_PRESS, keypad } from "./keypad.ts";

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
  owner.callbackQuery(KEYPAD_PRESS, async (ctx, next) => {
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
    (ctx.update.callback_query as { data: string }).data = CODE_SUBMITTED;
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
