import { Composer } from "grammy";
import type { BotContext } from "../context.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

const CONSENT_COMMANDS = /^\/(optout|optin)(@\w+)?(\s|$)/;
/** The only buttons a friend is ever shown (/guess); any other press of theirs is not theirs to make. */
const FRIEND_BUTTONS = /^guess:/;

/**
 * Who may use the bot. The owner (one id from config) may do anything; friends the owner allowed
 * may talk (the rate limit keeps their messages waiting, in the inbox: friend-chat.ts); everyone
 * else gets one short refusal a day and costs no model time. Group chats are ignored unless the
 * owner enabled them in config. A press this stops is answered by the press guard (presses.ts).
 */
export function accessControl(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  composer.use(async (ctx, next) => {
    const from = ctx.from;
    const chat = ctx.chat;
    if (!from || !chat || from.is_bot) return;
    if (chat.type !== "private" && !services.config.bot.groups.includes(chat.id)) return;
    if (from.id === services.ownerId) {
      ctx.role = "owner";
      return next();
    }
    if (await services.friends.isAllowed(from.id)) {
      ctx.role = "friend";
      if (chat.type === "private" && ctx.callbackQuery && !FRIEND_BUTTONS.test(ctx.callbackQuery.data ?? ""))
        return;
      return next();
    }
    ctx.role = "stranger";
    // Anyone may ask not to be imitated: leaving must not need the owner's permission.
    if (CONSENT_COMMANDS.test(ctx.message?.text ?? "")) return next();
    if (chat.type !== "private" || !ctx.message) return; // a stranger's button press: nothing done
    const today = new Date().toISOString().slice(0, 10);
    if ((await services.refusals.read(String(from.id))) === today) return;
    await services.refusals.write(String(from.id), today);
    await ctx.reply(texts.refusal(await services.ownerName()));
  });
  return composer;
}
