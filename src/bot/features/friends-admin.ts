import { Composer } from "grammy";
import { sanitizeName } from "../../dataset/names.ts";
import { SESSION_GAP_MINUTES } from "../../dataset/sessions.ts";
import { plural } from "../../plural.ts";
import type { BotContext } from "../context.ts";
import { fullName } from "../incoming-text.ts";
import { noReplyNote } from "../no-reply.ts";
import { displayName, hasHistory, type PickedPerson, pickerKeyboard, pickPerson } from "../people.ts";
import type { BotServices } from "../services.ts";

const PICKER_SIZE = 8;
const TELEGRAM_MESSAGE_LIMIT = 4000;

/** Splits a long text at line ends into messages Telegram accepts. */
export function chunks(text: string, limit = TELEGRAM_MESSAGE_LIMIT): string[] {
  const out: string[] = [];
  let current = "";
  for (const line of text.split("\n")) {
    const piece = line.length > limit ? line.slice(0, limit) : line;
    if (current && current.length + piece.length + 1 > limit) {
      out.push(current);
      current = "";
    }
    current = current ? `${current}\n${piece}` : piece;
  }
  if (current) out.push(current);
  return out;
}

/**
 * Who may talk to the twin: /allow (a picker of the owner's top conversation partners, a name,
 * a forwarded message or a shared contact), /revoke, and /log — what the twin said in the
 * owner's name to a friend.
 */
export function friendsAdmin(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const owner = composer.filter((ctx) => ctx.role === "owner");
  const { history } = services;

  const allow = async (ctx: BotContext, id: number, name: string) => {
    await services.friends.allow(id);
    await ctx.reply(`${name} can now talk to your twin. /revoke to undo.`);
  };

  owner.command("allow", async (ctx) => {
    const query = ctx.match.trim();
    if (query) {
      const person = await pickPerson(ctx, history, query, "allow");
      if (person) await allow(ctx, person.id, person.name);
      return;
    }
    const choices = await history.conversationPartners({
      limit: PICKER_SIZE,
      gapMinutes: SESSION_GAP_MINUTES,
      exclude: await services.friends.allowedIds(),
    });
    const keyboard = pickerKeyboard(
      choices.map((person) => [sanitizeName(person.name, person.id), `allow:${person.id}`]),
    );
    if (keyboard) {
      return ctx.reply(
        "Who may talk to your twin? Your busiest chats first — or forward me a message from someone, or share their contact.",
        { reply_markup: keyboard },
      );
    }
    await ctx.reply(
      (await hasHistory(history))
        ? "Everyone you talk with most is allowed already. Forward me a message from someone else, share their contact, or /allow <name>."
        : "Forward me a message from someone, or share their contact, to let them talk to your twin (or /import your history to pick from it).",
    );
  });
  owner.callbackQuery(/^allow:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    await services.friends.allow(id);
    const name = await displayName(history, id);
    await ctx.answerCallbackQuery({ text: `${name} allowed` });
    await ctx.editMessageText(`${name} can now talk to your twin. /revoke to undo.`);
  });
  owner.on("message:contact", async (ctx) => {
    const contact = ctx.msg.contact;
    if (!contact.user_id) return ctx.reply("That contact has no Telegram account I can see.");
    return allow(ctx, contact.user_id, [contact.first_name, contact.last_name].filter(Boolean).join(" "));
  });
  owner.on("message:forward_origin", async (ctx) => {
    const origin = ctx.msg.forward_origin;
    if (origin.type === "user") return allow(ctx, origin.sender_user.id, fullName(origin.sender_user));
    if (origin.type === "hidden_user") {
      return ctx.reply(
        `${origin.sender_user_name} hides their account in forwards. Share their contact instead, or /allow with their name.`,
      );
    }
    return ctx.reply("Forward a message written by a person (not a channel or group).");
  });

  owner.command("revoke", async (ctx) => {
    const query = ctx.match.trim();
    if (query) {
      const person = await pickPerson(ctx, history, query, "revoke");
      if (!person) return;
      if (!(await services.friends.revoke(person.id)))
        return ctx.reply(`${person.name} is not an allowed friend.`);
      return ctx.reply(`${person.name} can no longer talk to your twin.`);
    }
    const allowed = await services.friends.allowedIds();
    if (allowed.length === 0) return ctx.reply("Nobody is allowed yet. /allow to add someone.");
    const buttons: [string, string][] = [];
    for (const id of allowed.slice(0, 50)) buttons.push([await displayName(history, id), `revoke:${id}`]);
    await ctx.reply("Whose access do you take back?", { reply_markup: pickerKeyboard(buttons) });
  });
  owner.callbackQuery(/^revoke:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    await services.friends.revoke(id);
    const name = await displayName(history, id);
    await ctx.answerCallbackQuery({ text: `${name} revoked` });
    await ctx.editMessageText(`${name} can no longer talk to your twin.`);
  });

  owner.command("log", async (ctx) => {
    const query = ctx.match.trim();
    if (!query) return ctx.reply("Whose conversation? /log <name>");
    const person = await pickPerson(ctx, history, query, "log");
    if (person) await showLog(ctx, person);
  });
  owner.callbackQuery(/^log:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    await ctx.answerCallbackQuery();
    await showLog(ctx, { id, name: await displayName(history, id) });
  });

  const showLog = async (ctx: BotContext, { id, name }: PickedPerson) => {
    const stored = await services.messages.recent({ personId: id, mode: "friend" }, 200);
    if (stored.length === 0) return ctx.reply(`${name} has not talked to your twin yet.`);
    const silent = await services.messages.withoutReply(); // marked after the message left unanswered
    const lines = stored.map(
      (m) =>
        `${m.sentAt.toISOString().slice(0, 16).replace("T", " ")} ${m.fromTwin ? "twin (as you)" : name}: ${m.marker ? `${m.marker} ` : ""}${m.text}` +
        noReplyNote(silent, { personId: id, mode: "friend" }, m.id),
    );
    for (const chunk of chunks(
      `Your twin and ${name}, latest ${plural(stored.length, "message")}:\n${lines.join("\n")}`,
    )) {
      await ctx.reply(chunk);
    }
  };
  return composer;
}
