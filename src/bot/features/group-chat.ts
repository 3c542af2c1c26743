import { Composer } from "grammy";
import type { Message, MessageEntity } from "grammy/types";
import type { BotContext } from "../context.ts";
import { fullName, incomingText } from "../incoming-text.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";
import { consent } from "./consent.ts";
import { type FriendInbox, introduce } from "./friend-chat.ts";

/** How a group message speaks to the twin (pure): not at all, with a command, or as a message. */
export type GroupAddress =
  | { kind: "none" }
  | { kind: "command"; command: string; rest: string }
  | { kind: "message"; text: string };

/**
 * Whether a group message addresses this bot, and what it says once the address is taken out: a
 * command for this bot (`/cmd` or `/cmd@this_bot`, never another bot's), a mention of it, or a
 * reply to one of its messages. With Telegram's privacy mode on, only these reach a bot at all.
 */
export function groupAddress(message: Message, me: { id: number; username: string }): GroupAddress {
  const text = message.text ?? message.caption ?? "";
  const entities: MessageEntity[] = message.entities ?? message.caption_entities ?? [];
  const part = (entity: MessageEntity) => text.slice(entity.offset, entity.offset + entity.length);
  const command = entities.find((entity) => entity.type === "bot_command" && entity.offset === 0);
  if (command) {
    const [name = "", target] = part(command).slice(1).split("@");
    if (target !== undefined && target.toLowerCase() !== me.username.toLowerCase()) return { kind: "none" };
    return { kind: "command", command: name.toLowerCase(), rest: text.slice(command.length).trim() };
  }
  const mentions = entities.filter(
    (entity) =>
      (entity.type === "mention" && part(entity).toLowerCase() === `@${me.username.toLowerCase()}`) ||
      (entity.type === "text_mention" && entity.user.id === me.id),
  );
  const isReply = message.reply_to_message?.from?.id === me.id;
  if (mentions.length === 0 && !isReply) return { kind: "none" };
  let said = text;
  for (const mention of [...mentions].sort((a, b) => b.offset - a.offset)) {
    if (mention.type === "mention")
      said = said.slice(0, mention.offset) + said.slice(mention.offset + mention.length);
  }
  said = said.replace(/\s+/g, " ").trim();
  const withText =
    message.text !== undefined ? { ...message, text: said } : { ...message, caption: said || undefined };
  return { kind: "message", text: incomingText(withText as Message) };
}

const PRIVATE_ONLY = "That works only in a private chat with me.";

/**
 * Everything that happens in an enabled group, and nothing more: the owner's commands and
 * buttons run only in the owner's private chat (here they get one line saying so), the owner's
 * own messages get no answer, and a friend who addresses the twin gets an answer built from this
 * group's history alone, sent to this group. Group updates never reach the private features.
 */
export function groupChat(services: BotServices, inbox: FriendInbox): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const group = composer.filter((ctx) => ctx.chat !== undefined && ctx.chat.type !== "private");
  group.use(consent(services)); // anyone may opt out, wherever they are
  group.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: PRIVATE_ONLY }));
  group.on("message", async (ctx) => {
    const address = groupAddress(ctx.msg, ctx.me);
    if (address.kind === "none") return;
    if (ctx.role === "owner") {
      if (address.kind === "command")
        await ctx.reply(`/${address.command} works only in our private chat: @${ctx.me.username}.`);
      return; // the owner's own words in a group are theirs, not a message to the twin
    }
    if (ctx.role !== "friend") return;
    const text = address.kind === "message" ? address.text : address.rest;
    if (!text) {
      if (!(await introduce(services, ctx, ctx.from.id)))
        await ctx.reply(texts.friendHelp(await services.ownerName()));
      return;
    }
    const chat = ctx.chat;
    await inbox(ctx, text, {
      ref: { personId: ctx.from.id, mode: "friend", groupId: chat.id },
      chatId: chat.id,
      name: fullName(ctx.from),
      groupTitle: "title" in chat ? chat.title : undefined,
    });
  });
  group.use(() => undefined); // a group update ends here
  return composer;
}
