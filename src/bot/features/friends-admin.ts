import { Composer, InlineKeyboard } from "grammy";
import type { BotContext } from "../context.ts";
import { findPerson, personName, topPartners } from "../people.ts";
import type { BotServices } from "../services.ts";
import { fullName } from "./friend-chat.ts";

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
  const { pool } = services.database;

  const allow = async (ctx: BotContext, id: number, name: string) => {
    await services.friends.allow(id);
    await ctx.reply(`${name} can now talk to your twin. /revoke to undo.`);
  };

  owner.command("allow", async (ctx) => {
    const query = ctx.match.trim();
    if (query) {
      const person = await findPerson(pool, query);
      if (person) return allow(ctx, person.id, person.name);
      if (/^\d+$/.test(query)) return allow(ctx, Number(query), `User ${query}`);
      return ctx.reply(
        `Nobody called “${query}” in your history. Forward me a message from them, or share their contact.`,
      );
    }
    const choices = await topPartners(pool, {
      limit: PICKER_SIZE,
      exclude: await services.friends.allowedIds(),
    });
    const keyboard = new InlineKeyboard();
    for (const person of choices) keyboard.text(person.name, `allow:${person.id}`).row();
    await ctx.reply(
      choices.length > 0
        ? "Who may talk to your twin? Your busiest chats first — or forward me a message from someone, or share their contact."
        : "Forward me a message from someone, or share their contact, to let them talk to your twin.",
      { reply_markup: keyboard },
    );
  });
  owner.callbackQuery(/^allow:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    await services.friends.allow(id);
    const name = await personName(pool, id);
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
      const person = await findPerson(pool, query);
      const id = person?.id ?? (/^\d+$/.test(query) ? Number(query) : undefined);
      if (id === undefined || !(await services.friends.revoke(id)))
        return ctx.reply(`“${query}” is not an allowed friend.`);
      return ctx.reply(`${person?.name ?? `User ${id}`} can no longer talk to your twin.`);
    }
    const allowed = await services.friends.allowedIds();
    if (allowed.length === 0) return ctx.reply("Nobody is allowed yet. /allow to add someone.");
    const keyboard = new InlineKeyboard();
    for (const id of allowed.slice(0, 50)) keyboard.text(await personName(pool, id), `revoke:${id}`).row();
    await ctx.reply("Whose access do you take back?", { reply_markup: keyboard });
  });
  owner.callbackQuery(/^revoke:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    await services.friends.revoke(id);
    const name = await personName(pool, id);
    await ctx.answerCallbackQuery({ text: `${name} revoked` });
    await ctx.editMessageText(`${name} can no longer talk to your twin.`);
  });

  owner.command("log", async (ctx) => {
    const query = ctx.match.trim();
    if (!query) return ctx.reply("Whose conversation? /log <name>");
    const person = await findPerson(pool, query);
    const id = person?.id ?? (/^\d+$/.test(query) ? Number(query) : undefined);
    if (id === undefined) return ctx.reply(`Nobody called “${query}” in your history.`);
    const name = person?.name ?? (await personName(pool, id));
    const stored = await services.messages.recent({ personId: id, mode: "friend" }, 200);
    if (stored.length === 0) return ctx.reply(`${name} has not talked to your twin yet.`);
    const lines = stored.map(
      (m) =>
        `${m.sentAt.toISOString().slice(0, 16).replace("T", " ")} ${m.fromTwin ? "twin (as you)" : name}: ${m.text}`,
    );
    for (const chunk of chunks(
      `Your twin and ${name}, latest ${stored.length} messages:\n${lines.join("\n")}`,
    )) {
      await ctx.reply(chunk);
    }
  });
  return composer;
}
