import { Composer, InlineKeyboard } from "grammy";
import type { GuessRound } from "../../evaluation/guess.repository.ts";
import type { BotContext } from "../context.ts";
import type { BotServices } from "../services.ts";

const LABELS = ["A", "B"] as const;

/** A round as a message: the last turns of the real conversation, then the two candidates (pure). */
export function roundText(round: GuessRound, owner: string): string {
  const lines = round.context.slice(-4).map((turn) => `${turn.speaker}: ${turn.messages.join(" / ")}`);
  return [
    `Which one is real? One reply is what ${owner} really wrote next, the other is the twin's.`,
    "",
    ...lines,
    "",
    ...round.candidates.map((messages, i) => `${LABELS[i]}: ${messages.join(" / ")}`),
  ].join("\n");
}

/**
 * "Which one is real?" for allowed friends (/guess): a held-out turn of their own chat with the
 * owner, the real reply and the twin's in random order; the pick is recorded for the report.
 */
export function guessGame(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const rounds = services.repositories.guesses;
  const friends = composer.filter((ctx) => ctx.role === "friend");

  friends.command("guess", async (ctx) => {
    const round = await rounds.nextRound(ctx.from?.id as number);
    if (!round) {
      return ctx.reply(
        "Nothing to guess right now: there are no (more) evaluated turns from our chat. Ask again after the next evaluation.",
      );
    }
    await ctx.reply(roundText(round, await services.ownerName()), {
      reply_markup: new InlineKeyboard()
        .text(`${LABELS[0]} is real`, `guess:${round.voteId}:0`)
        .text(`${LABELS[1]} is real`, `guess:${round.voteId}:1`),
    });
  });

  composer.callbackQuery(/^guess:(\d+):([01])$/, async (ctx) => {
    if (ctx.role !== "friend") return ctx.answerCallbackQuery();
    const picked = Number(ctx.match[2]) as 0 | 1;
    const result = await rounds.vote(Number(ctx.match[1]), ctx.from.id, picked);
    if (!result) return ctx.answerCallbackQuery({ text: "That round is already answered." });
    await ctx.answerCallbackQuery();
    const verdict = result.fooled
      ? `The twin fooled you: ${LABELS[result.realPosition]} was the real one.`
      : `Right: ${LABELS[picked]} was the real one.`;
    await ctx.editMessageText(
      `${ctx.callbackQuery.message?.text ?? ""}\n\n${verdict} /guess for another round.`,
    );
  });
  return composer;
}
