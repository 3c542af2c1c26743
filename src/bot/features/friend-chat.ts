import { Composer } from "grammy";
import type { ConversationRef } from "../bot-messages.repository.ts";
import type { BotContext } from "../context.ts";
import { fullName, incomingText } from "../incoming-text.ts";
import { liveMarker } from "../live-marker.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

/** Where a friend's message goes: their conversation, and the chat the reply is sent to. */
export type Delivery = {
  ref: ConversationRef;
  chatId: number;
  name: string;
  groupTitle?: string | undefined;
};

/**
 * Takes a friend's message, private or in a group: stored first (once per update, with the marker
 * line a forward or a reply shows before it: live-marker.ts), then the replier answers the burst
 * after it goes quiet; over the rate limit it waits for a later round (rate-limit.ts), and the
 * friend hears once why. The first message a friend ever sends gets the
 * introduction. While the owner has paused the twin, messages are kept as context and the friend
 * hears once that the twin is away.
 */
export type FriendInbox = (ctx: BotContext, text: string, delivery: Delivery) => Promise<void>;

export function friendInbox(services: BotServices): FriendInbox {
  const toldAway = new Set<string>();
  return async (ctx, text, { ref, chatId, name, groupTitle }) => {
    await introduce(services, ctx, ref.personId);
    const marker = ctx.msg
      ? await liveMarker(services, ctx.msg, ref, { botId: ctx.me.id, personName: name })
      : null;
    const awayKey = `${ref.personId}@${chatId}`;
    if (services.settings.paused) {
      const stored = await services.messages.addIncoming(ref, text, ctx.update.update_id, {
        answered: true,
        marker,
      });
      if (stored === undefined) return; // the same update again: it was handled
      if (!toldAway.has(awayKey)) await ctx.reply(texts.away(await services.ownerName()));
      toldAway.add(awayKey);
      return;
    }
    const admitted = await services.gate.admit(
      { ...ref, chatId, name, groupTitle },
      text,
      ctx.update.update_id,
      marker,
    );
    if (!admitted.stored) return;
    toldAway.delete(awayKey);
    if (admitted.note) await ctx.reply(admitted.fate === "held" ? texts.rateLimited : texts.backlogFull);
  };
}

/** Sends the introduction unless this friend had it (once per friend, until the owner resets them); true when sent. */
export async function introduce(services: BotServices, ctx: BotContext, personId: number): Promise<boolean> {
  if (!(await services.friends.introduce(personId))) return false;
  await ctx.reply(texts.intro(await services.ownerName()));
  return true;
}

/** A command at the start of a message (`/foo`, `/foo@bot`): friends have a few, the rest get one line. */
const COMMAND = /^\/\w/;

/**
 * A friend writes to the twin in private; the twin answers as the owner. /start and /help introduce
 * the twin (once) or say in one line what friends can do; so does any command the bot does not
 * know, which never reaches the model.
 */
export function friendChat(services: BotServices, inbox: FriendInbox): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const friends = composer.filter((ctx) => ctx.role === "friend");
  const help = async (ctx: BotContext) => ctx.reply(texts.friendHelp(await services.ownerName()));
  friends.command(["start", "help"], async (ctx) => {
    if (!(await introduce(services, ctx, ctx.from?.id as number))) await help(ctx);
  });
  friends.on("message:text").filter((ctx) => COMMAND.test(ctx.msg.text), help);
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
