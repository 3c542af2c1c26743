import { Composer } from "grammy";
import type { User } from "grammy/types";
import type { ConversationRef } from "../bot-messages.repository.ts";
import type { BotContext } from "../context.ts";
import { incomingText } from "../incoming-text.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

export const fullName = (user: User) => [user.first_name, user.last_name].filter(Boolean).join(" ");

/** Where a friend's message goes: their conversation, and the chat the reply is sent to. */
export type Delivery = {
  ref: ConversationRef;
  chatId: number;
  name: string;
  groupTitle?: string | undefined;
};

/**
 * Takes a friend's message, private or in a group: stored first (once per update), then the
 * replier answers the burst after it goes quiet. While the owner has paused the twin, messages
 * are kept as context and the friend hears once that the twin is away.
 */
export type FriendInbox = (ctx: BotContext, text: string, delivery: Delivery) => Promise<void>;

export function friendInbox(services: BotServices): FriendInbox {
  const toldAway = new Set<string>();
  return async (ctx, text, { ref, chatId, name, groupTitle }) => {
    const first = (await services.messages.count(ref)) === 0;
    const paused = services.settings.paused;
    const stored = await services.messages.addIncoming(ref, text, ctx.update.update_id, { answered: paused });
    if (stored === undefined) return; // the same update again: it was handled
    if (first) await ctx.reply(texts.intro(await services.ownerName()));
    const awayKey = `${ref.personId}@${chatId}`;
    if (paused) {
      if (!toldAway.has(awayKey)) await ctx.reply(texts.away(await services.ownerName()));
      toldAway.add(awayKey);
      return;
    }
    toldAway.delete(awayKey);
    services.replier.schedule({ ...ref, chatId, name, groupTitle });
  };
}

/** A friend writes to the twin in private; the twin answers as the owner. */
export function friendChat(services: BotServices, inbox: FriendInbox): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const friends = composer.filter((ctx) => ctx.role === "friend");
  friends.command(["start", "help"], async (ctx) => {
    await ctx.reply(texts.intro(await services.ownerName()));
  });
  friends.on("message", async (ctx) => {
    const text = incomingText(ctx.msg);
    if (!text) return;
    await inbox(ctx, text, {
      ref: { personId: ctx.from.id, mode: "friend" },
      chatId: ctx.chat.id,
      name: fullName(ctx.from),
    });
  });
  return composer;
}
