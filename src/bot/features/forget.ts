import { type Conversation, createConversation } from "@grammyjs/conversations";
import { Composer, type Context, InlineKeyboard } from "grammy";
import { forgetEverything, forgetPersonalChat } from "../../history/forget.ts";
import type { BotContext } from "../context.ts";
import { findPerson } from "../people.ts";
import type { BotServices } from "../services.ts";

type Target = { personId: number; name: string } | "all";

/** `/forget <friend|all>`: deletes stored history and the bot's conversations, after a confirmation. */
export function forget(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();

  const erase = async (target: Target): Promise<string> => {
    if (target === "all") {
      const { messages } = await forgetEverything(services.database.pool);
      const conversations = await services.messages.forget(undefined);
      return `Deleted ${messages} messages of history, every dataset and ${conversations} messages of the twin's conversations. Your friends list stays.`;
    }
    const { messages } = await forgetPersonalChat(services.database.pool, target.personId);
    const conversations = await services.messages.forget([target.personId]);
    for (const mode of ["friend", "talk"] as const)
      await services.replier.reset({ personId: target.personId, mode });
    return `Deleted your personal chat with ${target.name} (${messages} messages, and the dataset examples made from it) and ${conversations} messages of their conversations with the twin.`;
  };

  async function forgetConversation(
    conversation: Conversation<BotContext, Context>,
    ctx: Context,
    target: Target,
  ) {
    const what =
      target === "all"
        ? "ALL imported history, every dataset and every conversation with the twin"
        : `your personal chat with ${target.name} and their conversations with the twin`;
    await ctx.reply(`Delete ${what}? This cannot be undone.`, {
      reply_markup: new InlineKeyboard().text("Yes, delete", "forget:yes").text("No, keep", "forget:no"),
    });
    const answer = await conversation.waitForCallbackQuery(["forget:yes", "forget:no"], {
      otherwise: (other) => other.reply("Press “Yes, delete” or “No, keep” above, or /cancel."),
    });
    await answer.answerCallbackQuery();
    if (answer.callbackQuery.data === "forget:no") {
      await answer.editMessageText("Kept everything.");
      return;
    }
    const result = await conversation.external(() => erase(target));
    await answer.editMessageText(result);
  }

  composer.use(createConversation(forgetConversation, "forget"));
  const owner = composer.filter((ctx) => ctx.role === "owner");
  owner.command("forget", async (ctx) => {
    const query = ctx.match.trim();
    if (!query) return ctx.reply("What should I forget? /forget <friend> or /forget all");
    if (query.toLowerCase() === "all") return ctx.conversation.enter("forget", "all");
    const person = await findPerson(services.database.pool, query);
    if (!person) return ctx.reply(`Nobody called “${query}” in your history.`);
    await ctx.conversation.enter("forget", { personId: person.id, name: person.name });
  });
  return composer;
}
