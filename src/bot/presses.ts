import type { Context, MiddlewareFn, Transformer } from "grammy";

/**
 * Every button press gets exactly one answerCallbackQuery, whatever its data and whoever pressed
 * it, so Telegram's spinner always stops. The transformer notes each press answered, on the bot's
 * Api (grammY copies it into every update's) and on each conversation's own Api (bot.ts installs it
 * there too); the middleware, installed first, answers after all the others whatever none of them
 * did — stale, unknown, or not this person's to press — with a short notice.
 */
export class PressAnswers {
  private readonly answered = new Set<string>();

  constructor(private readonly notice: string) {}

  readonly transformer: Transformer = (prev, method, payload, signal) => {
    if (method === "answerCallbackQuery")
      this.answered.add((payload as { callback_query_id: string }).callback_query_id);
    return prev(method, payload, signal);
  };

  readonly middleware: MiddlewareFn<Context> = async (ctx, next) => {
    const id = ctx.callbackQuery?.id;
    if (id === undefined) return next();
    try {
      await next();
    } finally {
      // An answer that fails (a press too old to answer) is not tried again.
      if (!this.answered.has(id)) await ctx.answerCallbackQuery({ text: this.notice }).catch(() => undefined);
      this.answered.delete(id);
    }
  };
}
