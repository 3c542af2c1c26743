import fs from "node:fs/promises";
import path from "node:path";
import { type Conversation, createConversation } from "@grammyjs/conversations";
import { Composer, type Context } from "grammy";
import { ownerTimeZone } from "../../config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../../dataset/build.usecase.ts";
import { summaryLine } from "../../dataset/manifest.ts";
import { importDesktopExport } from "../../history/desktop-import/import.usecase.ts";
import { plural } from "../../plural.ts";
import type { BotContext } from "../context.ts";
import { progressBar } from "../jobs.ts";
import type { BotServices } from "../services.ts";

/** The Bot API lets bots download files up to 20 MB. */
export const BOT_DOWNLOAD_LIMIT = 20 * 1024 * 1024;

/** Builds a dataset with the defaults as a background job; `then` runs once it is built (e.g. /train's confirmation). */
export function startDatasetJob(
  services: BotServices,
  chatId: number,
  then?: (datasetId: number) => Promise<void>,
): number {
  return services.jobs.start(chatId, "Building the dataset", async ({ signal, report }) => {
    const owned = await services.history.getOwner();
    const result = await buildDataset(services, {
      ...defaultDatasetOptions(ownerTimeZone(services.config.timeZone, owned?.timeZone)),
      staleSeconds: services.config.training.staleSeconds,
      signal,
      onIndexing: ({ indexed, total }) => {
        if (indexed < total) report(`memory index: ${indexed} of ${total} messages, waiting for it…`);
      },
      onProgress: ({ chats, totalChats, examples }) =>
        report(`${progressBar(chats, totalChats)} · ${chats}/${totalChats} chats · ${examples} examples`),
    });
    const { counts, memory } = result.manifest;
    await then?.(result.datasetId);
    const recalled = memory
      ? ` Memory: ${memory.examples} of them recall past exchanges.`
      : result.memoryOff !== undefined
        ? ` Memory is off: ${result.memoryOff}`
        : "";
    return `dataset ${result.datasetId}: ${summaryLine(result.manifest)}; ${counts.trainExamples} training and ${plural(counts.evalExamples, "held-out example")}.${recalled}`;
  });
}

/**
 * `/import` (a conversation: it waits for the export as a document) and `/dataset`. Both run as
 * background jobs that edit one status message and can be cancelled.
 */
export function historyJobs(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();

  const startImport = (chatId: number, fileId: string, fileName: string) =>
    services.jobs.start(chatId, `Importing ${fileName}`, async ({ signal, report }) => {
      // One folder per upload keeps the file's own name, which the import records.
      await fs.mkdir(services.config.dataDir, { recursive: true });
      const folder = await fs.mkdtemp(path.join(services.config.dataDir, "upload-"));
      const file = path.join(folder, path.basename(fileName));
      try {
        report("downloading…");
        await services.download(fileId, file);
        const summary = await importDesktopExport(
          { historyRepository: services.history },
          {
            input: file,
            owner: `user${services.ownerId}`, // the bot's owner is a user, never a channel
            timeZone: services.config.timeZone,
            batchSize: services.config.importBatchSize,
            staleSeconds: services.config.training.staleSeconds,
            signal,
            onProgress: ({ bytes, totalBytes, messages }) =>
              report(`${progressBar(bytes, totalBytes)} · ${messages.toLocaleString("en-US")} messages`),
          },
        );
        return (
          `${plural(summary.messages, "message", { grouped: true })} in ${plural(summary.chats, "chat")} ` +
          `(${summary.new} new, ${summary.updated} updated, ${summary.unchanged} unchanged) in ${summary.seconds.toFixed(1)} s.` +
          summary.warnings.map((warning) => `\n⚠️ ${warning}`).join("")
        );
      } finally {
        await fs.rm(folder, { recursive: true, force: true });
        // Whatever it stored, finished or stopped partway, goes into the memory index.
        services.memoryIndexer.request();
      }
    });

  async function importConversation(conversation: Conversation<BotContext, Context>, ctx: Context) {
    await ctx.reply(
      "Send me your Telegram Desktop export's result.json as a file (Settings → Advanced → Export Telegram data, format JSON). " +
        "Bots can only download files up to 20 MB: for a larger export, run `node bin/twin.js import result.json` on the server (with docker compose: put it in ./import, then `docker compose run --rm bot node bin/twin.js import /import/result.json`). /cancel to stop.",
    );
    const answer = await conversation.waitFor(":document", {
      otherwise: (other) => other.reply("Please send result.json as a file, or /cancel."),
    });
    const document = answer.msg.document;
    if ((document.file_size ?? 0) > BOT_DOWNLOAD_LIMIT) {
      await answer.reply(
        `That file is ${((document.file_size ?? 0) / 1024 / 1024).toFixed(1)} MB; bots can download 20 MB at most. Import it on the server instead: \`node bin/twin.js import result.json\` (with docker compose: put it in ./import, then \`docker compose run --rm bot node bin/twin.js import /import/result.json\`).`,
      );
      return;
    }
    const name = document.file_name ?? "result.json";
    if (!name.toLowerCase().endsWith(".json")) {
      await answer.reply(`${name} is not a JSON export: export with format “Machine-readable JSON”.`);
      return;
    }
    const chatId = answer.chat.id;
    await conversation.external(() => startImport(chatId, document.file_id, name));
  }

  composer.use(createConversation(importConversation, "import"));
  const owner = composer.filter((ctx) => ctx.role === "owner");
  owner.command("import", (ctx) => ctx.conversation.enter("import"));

  owner.command("dataset", (ctx) => {
    startDatasetJob(services, ctx.chat.id);
  });

  composer.callbackQuery(/^job:cancel:(\d+)$/, async (ctx) => {
    if (ctx.role !== "owner") return; // not theirs to press: the press guard answers (presses.ts)
    const cancelled = services.jobs.cancel(Number(ctx.match[1]));
    await ctx.answerCallbackQuery({ text: cancelled ? "Cancelling…" : "That job already finished." });
  });
  return composer;
}
