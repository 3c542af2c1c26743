import { Composer } from "grammy";
import type { BotContext } from "../context.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

/** `/optout` and `/optin`: anyone but the owner decides whether the twin may imitate them. */
export function consent(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const others = composer.filter((ctx) => ctx.role !== "owner");
  others.command("optout", async (ctx) => {
    await services.friends.optOut(ctx.from?.id as number);
    await services.replier.reset({ personId: ctx.from?.id as number, mode: "talk" });
    await ctx.reply(texts.optedOut);
  });
  others.command("optin", async (ctx) => {
    await services.friends.optIn(ctx.from?.id as number);
    await ctx.reply(texts.optedIn);
  });
  return composer;
}
