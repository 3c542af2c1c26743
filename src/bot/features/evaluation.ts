import path from "node:path";
import { Composer, InputFile } from "grammy";
import { generateSamples } from "../../evaluation/generate.usecase.ts";
import { reportFolder, runReport } from "../../evaluation/report-runner.ts";
import { summaryLines } from "../../evaluation/summary.ts";
import type { BotContext } from "../context.ts";
import { progressBar } from "../jobs.ts";
import type { BotServices } from "../services.ts";

/** Held-out turns per /eval unless the owner names a number: enough for the discriminator to mean something. */
const DEFAULT_TURNS = 200;

/** `/eval [turns]`: twin eval in the background; the summary, the plots as pictures and the report as a file. */
export function evaluation(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const owner = composer.filter((ctx) => ctx.role === "owner");
  owner.command("eval", async (ctx) => {
    const inference = services.inference;
    if (!inference) return ctx.reply("Evaluation needs the model: this bot runs without one.");
    const turns = Number(ctx.match.trim() || DEFAULT_TURNS);
    if (!Number.isInteger(turns) || turns < 1) return ctx.reply("Usage: /eval [number of held-out turns]");
    const chatId = ctx.chat.id;
    services.jobs.start(chatId, "Evaluating the twin", async ({ signal, report }) => {
      const { database, config } = services;
      const id = await generateSamples(
        { ...services, engine: inference.engine, conversations: inference.conversations },
        {
          maxTurns: turns,
          signal,
          onProgress: (done, total, model) =>
            report(`${progressBar(done, total)} · ${done}/${total} · ${model}`),
        },
      );
      report("measuring: style metrics, the discriminator, plots…");
      const out = reportFolder(config.dataDir, id);
      await runReport(config.training, database.url, id, out);
      const evaluations = services.repositories.evaluations;
      const summary = await evaluations.summary(id);
      const pictures = await evaluations.files(id);
      await services.api.sendMessage(chatId, `Evaluation ${id}:\n${summaryLines(summary).join("\n")}`);
      if (pictures.length > 0) {
        await services.api.sendMediaGroup(
          chatId,
          pictures.map((file) => ({ type: "photo" as const, media: new InputFile(file.data, file.name) })),
        );
      }
      await services.api.sendDocument(
        chatId,
        new InputFile(path.join(out, "report.md"), `evaluation-${id}.md`),
      );
      return `evaluation ${id} is done: the summary, the plots and the report are above.`;
    });
  });
  return composer;
}
