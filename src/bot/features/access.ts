import { Composer } from "grammy";
import type { BotContext } from "../context.ts";
import { RateLimiter } from "../rate-limit.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

const CONSENT_COMMANDS = /^\/(optout|optin)(@\w+)?(\s|$)/;

/**
 * Who may use the bot. The owner (one id from config) may do anything; friends the owner allowed
 * may talk, within a rate limit; everyone else gets one short refusal a day and costs no model
 * time. Group chats are ignored unless the owner enabled them in config.
 */
export function accessControl(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const limiter = new RateLimiter(services.config.bot.rateLimitPerMinute);
  composer.use(async (ctx, next) => {
    const from = ctx.from;
    const chat = ctx.chat;
    if (!from || !chat || from.is_bot) return;
    if (chat.type !== "private" && !services.config.bot.groups.includes(chat.id)) return answerPress(ctx);
    if (from.id === services.ownerId) {
      ctx.role = "owner";
      return next();
    }
    if (await services.friends.isAllowed(from.id)) {
      ctx.role = "friend";
      const verdict = limiter.hit(from.id);
      if (verdict === "limited" && ctx.message) await ctx.reply(texts.rateLimited);
      if (verdict !== "ok") return answerPress(ctx);
      return next();
    }
    ctx.role = "stranger";
    // Anyone may ask not to be imitated: leaving must not need the owner's permission.
    if (CONSENT_COMMANDS.test(ctx.message?.text ?? "")) return next();
    await answerPress(ctx); // a stranger's button press: answered, so no spinner, and nothing done
    if (chat.type !== "private" || !ctx.message) return;
    const today = new Date().toISOString().slice(0, 10);
    if ((await services.refusals.read(String(from.id))) === today) return;
    await services.refusals.write(String(from.id), today);
    await ctx.reply(texts.refusal(await services.ownerName()));
  });
  return composer;
}

/** Ends a button press this middleware stops, so Telegram's spinner stops too. */
async function answerPress(ctx: BotContext): Promise<void> {
  if (ctx.callbackQuery) await ctx.answerCallbackQuery().catch(() => undefined);
}
