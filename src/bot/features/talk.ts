import { Composer } from "grammy";
import { sanitizeName } from "../../dataset/names.ts";
import { SESSION_GAP_MINUTES } from "../../dataset/sessions.ts";
import type { BotContext } from "../context.ts";
import { incomingText } from "../incoming-text.ts";
import { liveMarker } from "../live-marker.ts";
import { displayName, hasHistory, pickerKeyboard, pickPerson } from "../people.ts";
import type { BotServices } from "../services.ts";

const PICKER_SIZE = 8;

/**
 * `/talk <friend>`: the owner chats with a simulated friend — the twin plays them, with the real
 * history between the two as context. `/stop` ends it. People who opted out are never offered.
 */
export function talk(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const owner = composer.filter((ctx) => ctx.role === "owner");
  const { history } = services;

  const begin = async (ctx: BotContext, id: number, name: string) => {
    if ((await services.friends.optedOutIds()).includes(id)) {
      await ctx.reply(`${name} opted out of being simulated.`);
      return false;
    }
    ctx.session.talk = { personId: id, name };
    return true;
  };
  const started = (name: string) =>
    `You are now talking with ${name} — simulated by your twin from your real chats. /stop ends it.`;

  owner.command("talk", async (ctx) => {
    const query = ctx.match.trim();
    if (query) {
      const person = await pickPerson(ctx, history, query, "talk");
      if (!person) return;
      if (await begin(ctx, person.id, person.name)) await ctx.reply(started(person.name));
      return;
    }
    const choices = await history.conversationPartners({
      limit: PICKER_SIZE,
      gapMinutes: SESSION_GAP_MINUTES,
      exclude: await services.friends.optedOutIds(),
    });
    const keyboard = pickerKeyboard(
      choices.map((person) => [sanitizeName(person.name, person.id), `talk:${person.id}`]),
    );
    if (keyboard) return ctx.reply("Who do you want to talk to?", { reply_markup: keyboard });
    if (!(await hasHistory(history))) return ctx.reply("Nobody to talk to yet: /import your history first.");
    await ctx.reply(
      "Nobody in your history to offer: the people you talk with opted out of being simulated, or you wrote in none of their chats. /talk <name> finds someone by name.",
    );
  });
  owner.callbackQuery(/^talk:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    const name = await displayName(history, id);
    await ctx.answerCallbackQuery();
    if (await begin(ctx, id, name)) await ctx.editMessageText(started(name));
  });
  owner.command("stop", async (ctx) => {
    const current = ctx.session.talk;
    ctx.session.talk = undefined;
    await ctx.reply(
      current ? `Stopped talking with ${current.name}.` : "You are not talking with anyone. /talk to start.",
    );
  });

  // The owner's own messages: to the simulated friend while talking, otherwise a hint.
  owner.on("message", async (ctx) => {
    const current = ctx.session.talk;
    if (!current) {
      if (ctx.msg.text?.startsWith("/")) return ctx.reply("I do not know that command. /help lists them.");
      return ctx.reply(
        "You are not talking with anyone: /talk <friend> to chat with a simulated friend, /help for more.",
      );
    }
    if ((await services.friends.optedOutIds()).includes(current.personId)) {
      ctx.session.talk = undefined; // they opted out while the owner was talking to their simulation
      return ctx.reply(`${current.name} opted out of being simulated; the conversation ended.`);
    }
    const text = incomingText(ctx.msg);
    if (!text) return;
    const ref = { personId: current.personId, mode: "talk" as const };
    const marker = await liveMarker(services, ctx.msg, ref, { botId: ctx.me.id, personName: current.name });
    const stored = await services.messages.addIncoming(ref, text, ctx.update.update_id, { marker });
    if (stored === undefined) return;
    services.replier.schedule({ ...ref, chatId: ctx.chat.id, name: current.name });
  });
  return composer;
}
