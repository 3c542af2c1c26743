import { Composer } from "grammy";
import type { Manifest } from "../../dataset/manifest.ts";
import { summaryLine } from "../../dataset/manifest.ts";
import { SESSION_GAP_MINUTES } from "../../dataset/sessions.ts";
import { doctorStatusLines } from "../../doctor/status.ts";
import { plural } from "../../plural.ts";
import type { BotContext } from "../context.ts";
import { noReplyStatus } from "../no-reply.ts";
import { displayName } from "../people.ts";
import type { BotServices } from "../services.ts";
import { texts } from "../texts.ts";

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
    const stats = await services.history.stats({ top: 0, gapMinutes: SESSION_GAP_MINUTES });
    await ctx.reply(
      `${HELP}\n\nModel: ${services.model.name}${adapterLine(services)}\n` +
        `History: ${plural(stats.messages, "message", { grouped: true })} · friends allowed: ${friends.length}` +
        (services.settings.paused ? "\nPaused: friends get an 'away' message." : ""),
    );
  });

  owner.command("status", async (ctx) => {
    const stats = await services.history.stats({ top: 3, gapMinutes: SESSION_GAP_MINUTES });
    const dataset = await services.repositories.dataset.latestReady();
    const jobs = services.jobs.titles();
    const lines = [
      `History: ${plural(stats.messages, "message", { grouped: true })} in ${plural(
        stats.chatsByType.reduce((n, t) => n + t.chats, 0),
        "chat",
        { grouped: true },
      )}, ${plural(stats.people, "person", { many: "people", grouped: true })}`,
      stats.firstMessageAt
        ? `From ${stats.firstMessageAt.toISOString().slice(0, 10)} to ${stats.lastMessageAt?.toISOString().slice(0, 10)}`
        : "Nothing imported yet: /import",
      texts.memoryIndex(await services.repositories.memory.progress()),
      ...(stats.partners.length > 0
        ? [`Talks most with: ${stats.partners.map((p) => p.name ?? String(p.id)).join(", ")}`]
        : []),
      dataset?.manifest
        ? `Dataset ${dataset.id}: ${summaryLine(dataset.manifest as Manifest)}`
        : "No dataset yet: /dataset",
      `Model: ${services.model.name}${adapterLine(services)}`,
      // Where it runs and how fast, and what this machine serves best (`twin doctor` in short).
      ...(await doctorStatusLines({
        config: services.config,
        repositories: services.repositories,
        engine: services.inference?.engine,
      })),
      `Friends allowed: ${(await services.friends.allowedIds()).length}${services.settings.paused ? " · paused" : ""}`,
      jobs.length > 0 ? `Running: ${jobs.join(", ")}` : "No jobs running",
      // Conversations the model gave no reply (replier.ts): a line only when there are some.
      ...(await noReplyStatus(await services.messages.withoutReply(), (id) =>
        displayName(services.history, id),
      )),
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
