import { Composer } from "grammy";
import type { User } from "grammy/types";
import type { BotContext } from "../context.ts";
import { incomingText } from "../incoming-text.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

export const fullName = (user: User) => [user.first_name, user.last_name].filter(Boolean).join(" ");

/**
 * A friend writes, the twin answers as the owner. Each message is stored first (once per update),
 * then the replier answers the burst after it goes quiet. While the owner has paused the twin,
 * messages are kept as context and the friend hears once that the twin is away.
 */
export function friendChat(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const toldAway = new Set<number>();
  const friends = composer.filter((ctx) => ctx.role === "friend");
  friends.command(["start", "help"], async (ctx) => {
    await ctx.reply(texts.intro(await services.ownerName()));
  });
  friends.on("message", async (ctx) => {
    const chat = ctx.chat;
    if (chat.type !== "private") {
      // In an enabled group the twin speaks when spoken to: a reply to it or a mention.
      const username = ctx.me.username;
      const addressed =
        ctx.msg.reply_to_message?.from?.id === ctx.me.id ||
        (ctx.msg.text ?? ctx.msg.caption ?? "").includes(`@${username}`);
      if (!addressed) return;
    }
    const text = incomingText(ctx.msg);
    if (!text) return;
    const ref = { personId: ctx.from.id, mode: "friend" as const };
    const first = (await services.messages.count(ref)) === 0;
    const paused = services.settings.paused;
    const stored = await services.messages.addIncoming(ref, text, ctx.update.update_id, { answered: paused });
    if (stored === undefined) return; // the same update again: it was handled
    if (first) await ctx.reply(texts.intro(await services.ownerName()));
    if (paused) {
      if (!toldAway.has(ctx.from.id)) await ctx.reply(texts.away(await services.ownerName()));
      toldAway.add(ctx.from.id);
      return;
    }
    toldAway.delete(ctx.from.id);
    services.replier.schedule({ ...ref, chatId: chat.id, name: fullName(ctx.from) });
  });
  return composer;
}
