import { type Conversation, createConversation } from "@grammyjs/conversations";
import { Composer, type Context, InlineKeyboard } from "grammy";
import { datasetForgetting } from "../../dataset/dataset.repository.ts";
import { plural } from "../../plural.ts";
import type { BotContext } from "../context.ts";
import { displayName, pickPerson } from "../people.ts";
import type { BotServices } from "../services.ts";

type Target = { personId: number; name: string } | "all";

/** `/forget <friend|all>`: deletes stored history and the bot's conversations, after a confirmation. */
export function forget(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();

  const erase = async (target: Target): Promise<string> => {
    if (target === "all") {
      const { messages } = await services.history.forgetEverything(datasetForgetting);
      const conversations = await services.messages.forget(undefined);
      await services.friends.forgetIntroductions(undefined); // their next message is introduced again
      return `Deleted ${plural(messages, "message")} of history, every dataset and ${plural(conversations, "message")} of the twin's conversations. Your friends list stays.`;
    }
    const { messages } = await services.history.forgetPersonalChat(target.personId, datasetForgetting);
    const conversations = await services.messages.forget([target.personId]);
    await services.friends.forgetIntroductions([target.personId]);
    for (const mode of ["friend", "talk"] as const)
      await services.replier.reset({ personId: target.personId, mode });
    return `Deleted your personal chat with ${target.name} (${plural(messages, "message")}, and the dataset examples made from it) and ${plural(conversations, "message")} of their conversations with the twin.`;
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
    const person = await pickPerson(ctx, services.history, query, "forget:pick");
    if (person) await ctx.conversation.enter("forget", { personId: person.id, name: person.name });
  });
  owner.callbackQuery(/^forget:pick:(\d+)$/, async (ctx) => {
    const id = Number(ctx.match[1]);
    await ctx.answerCallbackQuery();
    await ctx.conversation.enter("forget", { personId: id, name: await displayName(services.history, id) });
  });
  return composer;
}
