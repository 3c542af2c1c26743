import { Composer } from "grammy";
import { createDatasetRepository } from "../../dataset/dataset.repository.ts";
import type { Manifest } from "../../dataset/manifest.ts";
import { summaryLine } from "../../dataset/manifest.ts";
import { historyStats } from "../../history/stats.ts";
import type { BotContext } from "../context.ts";
import type { BotServices } from "../services.ts";

const HELP = `I am your AI twin: friends you allow talk to me and I answer as you; you can talk to them, simulated.

/allow — let someone talk to the twin (picker, or forward me their message, or share their contact)
/revoke — take that back
/talk <friend> — chat with a simulated friend; /stop ends it
/log <friend> — what the twin said in your name to them
/import — send your Telegram Desktop export (result.json)
/dataset — build the training set from your history
/train — fine-tune the model on it (progress, loss chart, then the new adapter answers)
/model — trained adapters: switch between them or back to the base
/eval [turns] — does it sound like you? held-out turns, measured, with plots
/status — what is stored, the model, running jobs
/forget <friend|all> — delete stored history and conversations
/pause, /resume — stop or restart answering friends
/cancel — leave the current step`;

/** The owner's overview commands: /start, /help, /status, /pause, /resume. */
export function ownerInfo(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const owner = composer.filter((ctx) => ctx.role === "owner");

  owner.command(["start", "help"], async (ctx) => {
    const friends = await services.friends.allowedIds();
    const stats = await historyStats(services.database);
    await ctx.reply(
      `${HELP}\n\nModel: ${services.model.name}${adapterLine(services)}\n` +
        `History: ${stats.messages.toLocaleString("en-US")} messages · friends allowed: ${friends.length}` +
        (services.settings.paused ? "\nPaused: friends get an 'away' message." : ""),
    );
  });

  owner.command("status", async (ctx) => {
    const stats = await historyStats(services.database, { top: 3 });
    const dataset = await createDatasetRepository(services.database).latestReady();
    const jobs = services.jobs.titles();
    const lines = [
      `History: ${stats.messages.toLocaleString("en-US")} messages in ${stats.chatsByType.reduce((n, t) => n + t.chats, 0)} chats, ${stats.people} people`,
      stats.firstMessageAt
        ? `From ${stats.firstMessageAt.toISOString().slice(0, 10)} to ${stats.lastMessageAt?.toISOString().slice(0, 10)}`
        : "Nothing imported yet: /import",
      dataset?.manifest
        ? `Dataset ${dataset.id}: ${summaryLine(dataset.manifest as Manifest)}`
        : "No dataset yet: /dataset",
      `Model: ${services.model.name}${adapterLine(services)}`,
      `Friends allowed: ${(await services.friends.allowedIds()).length}${services.settings.paused ? " · paused" : ""}`,
      jobs.length > 0 ? `Running: ${jobs.join(", ")}` : "No jobs running",
    ];
    await ctx.reply(lines.join("\n"));
  });

  owner.command("pause", async (ctx) => {
    await services.settings.setPaused(true);
    await ctx.reply(
      "Paused: friends get a short 'away' message and no model time is spent. /resume to go on.",
    );
  });
  owner.command("resume", async (ctx) => {
    await services.settings.setPaused(false);
    await ctx.reply("Resumed: the twin answers friends again.");
  });
  return composer;
}

function adapterLine(services: BotServices): string {
  const adapter = services.model.adapter();
  return adapter
    ? ` + ${adapter.label ?? adapter.path.split("/").at(-1)} (scale ${adapter.scale})`
    : " (no adapter: the base model)";
}
