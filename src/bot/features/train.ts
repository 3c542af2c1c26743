import { Composer, InlineKeyboard, InputFile } from "grammy";
import { describeKind } from "../../inference/serving.ts";
import { plural } from "../../plural.ts";
import type { Preflight } from "../../remote/preflight.ts";
import type { WorkerGpu } from "../../training/config-choice.ts";
import { describeEstimate, formatDuration } from "../../training/plan.ts";
import { followRun, PHASE_LABELS, type RunProgress } from "../../training/progress.ts";
import { describeFailure, FAILURE_TAIL_LINES } from "../../training/run-log.ts";
import type { Adapter, TrainingRun } from "../../training/runs.repository.ts";
import { describePlan, planRun, queueRun, workerGpus } from "../../training/train.usecase.ts";
import {
  NoDatasetError,
  NothingToTrainError,
  RunFailedError,
  TrainPlanError,
} from "../../training/training.errors.ts";
import type { BotContext } from "../context.ts";
import { progressBar } from "../jobs.ts";
import type { BotServices } from "../services.ts";
import { startDatasetJob } from "./history-jobs.ts";

/** The status of a run in progress (pure): its phase, the steps with a bar, loss and the ETA. */
export function progressText(progress: RunProgress): string {
  const eta = progress.etaSeconds !== null ? `ETA ${formatDuration(progress.etaSeconds)}` : "";
  switch (progress.phase) {
    case "queued":
      return progress.requeues > 0
        ? "its worker went silent: waiting for a worker to resume it…"
        : "waiting for a worker…";
    case "loading":
    case "tokenizing":
      return [`${PHASE_LABELS[progress.phase]}…`, eta].filter(Boolean).join("\n");
    default: {
      const total = progress.maxSteps ?? 0;
      const parts = [`${progressBar(progress.step, total)} · step ${progress.step}/${total}`];
      if (progress.phase !== "training") parts.unshift(`${PHASE_LABELS[progress.phase]}…`);
      const figures = [
        progress.loss !== null ? `loss ${progress.loss.toFixed(3)}` : "",
        progress.evalLoss !== null ? `held-out ${progress.evalLoss.toFixed(3)}` : "",
        eta,
      ].filter(Boolean);
      if (figures.length) parts.push(figures.join(" · "));
      if (progress.resumedFrom > 0) parts.push(`resumed from step ${progress.resumedFrom}`);
      return parts.join("\n");
    }
  }
}

type Overall = { loss: number; perplexity: number; content_loss: number; content_perplexity: number };

/** Base versus tuned held-out loss, from the metrics the worker stored (pure). */
export function metricsText(metrics: Record<string, unknown> | null): string {
  const base = (metrics?.base as { overall?: Overall } | undefined)?.overall;
  const tuned = (metrics?.tuned as { overall?: Overall } | undefined)?.overall;
  if (!base || !tuned) return "No held-out examples: no loss to compare.";
  const f = (value: number) => value.toFixed(3);
  return [
    `Held-out loss on the messages' own text: base ${f(base.content_loss)} → tuned ${f(tuned.content_loss)} (perplexity ${base.content_perplexity.toFixed(1)} → ${tuned.content_perplexity.toFixed(1)}).`,
    `On every trained token: ${f(base.loss)} → ${f(tuned.loss)}; ${plural(Number(metrics?.eval_examples ?? 0), "held-out example")}.`,
  ].join("\n");
}

/** Follows a run in one edited status message; at the end, the chart and the metrics. */
export function followTraining(services: BotServices, chatId: number, run: TrainingRun): number {
  const { runs } = services.training;
  return services.jobs.start(chatId, `Training run ${run.id}`, async ({ signal, report }) => {
    const { run: finished } = await followRun(runs, run.id, {
      signal,
      pollMs: 1000,
      onProgress: (progress, current) => {
        const silent = current.heartbeatAt ? (Date.now() - current.heartbeatAt.getTime()) / 1000 : 0;
        const stale = current.status === "running" && silent > services.config.training.staleSeconds;
        report(
          stale
            ? `${progressText(progress)}\nits worker has been silent for ${formatDuration(silent)}: the next worker re-queues it`
            : progressText(progress),
        );
      },
    });
    if (finished.status === "cancelled") {
      const active = await runs.activeAdapter();
      return `cancelled. ${active ? `Adapter ${active.name} stays active.` : "The base model keeps answering."}`;
    }
    if (finished.status === "failed") {
      // The reason with the last lines of the run's log (the traceback), and where the rest is.
      const tail = await runs.logTail(run.id, FAILURE_TAIL_LINES);
      throw new RunFailedError(describeFailure(run.id, finished.error, tail));
    }
    await services.model.refresh();
    const chart = await runs.file(run.id, "chart_png");
    const summary = metricsText(finished.metrics);
    if (chart) {
      await services.api.sendPhoto(chatId, new InputFile(chart, `run-${run.id}-loss.png`), {
        caption: `Run ${run.id}: training and held-out loss per step.\n${summary}`,
      });
    }
    const active = await runs.activeAdapter();
    const made = active?.kind === "full" ? "fully tuned model" : "adapter";
    return `done in ${plural(finished.step, "step")}. ${chart ? "" : `${summary}\n`}The new ${made} ${active?.name ?? ""} now answers new messages; /model switches.`;
  });
}

/** `/train` (confirm, queue, follow with a progress message, then chart and metrics) and `/model`. */
export function training(services: BotServices): Composer<BotContext> {
  const composer = new Composer<BotContext>();
  const { runs } = services.training;

  const owner = composer.filter((ctx) => ctx.role === "owner");

  /**
   * The plan of a run on the latest dataset, with Start / Not now buttons; when a worker has
   * several GPUs, full fine-tuning is offered beside LoRA with its own plan.
   */
  const confirm = async (chatId: number) => {
    try {
      const plan = await planRun(services);
      const gpus = workerGpus(plan.workers);
      // Full fine-tuning needs a config for this base on these GPUs: without one, LoRA alone, and why.
      const full =
        gpus < 2
          ? undefined
          : await planRun(services, { datasetId: plan.dataset.id, method: "full" }).catch((error) => {
              if (error instanceof TrainPlanError) return error;
              throw error;
            });
      const remotes = await remotePlans(services, plan.dataset.id);
      const remoteText = remotes.length
        ? `\n\nOr on a machine reached over SSH (LoRA):\n${remotes.map((remote) => remote.line).join("\n")}`
        : "";
      const withRemotes = (keyboard: InlineKeyboard) => {
        for (const remote of remotes) {
          if (remote.button)
            keyboard.row().text(remote.button, `train:on:${plan.dataset.id}:${remote.index}`);
        }
        return keyboard.row().text("Not now", "train:no");
      };
      if (!full || full instanceof TrainPlanError) {
        const why = full ? `\n\nFull fine-tuning is not offered: ${full.message}.` : "";
        await services.api.sendMessage(
          chatId,
          `${describePlan(plan)}${why}${remoteText}\n\nStart training?`,
          {
            reply_markup: withRemotes(
              new InlineKeyboard().text("Start training", `train:go:${plan.dataset.id}:lora`),
            ),
          },
        );
        return;
      }
      const text = [
        `LoRA (a small adapter on the base, one GPU):\n${describePlan(plan)}`,
        `Full fine-tuning (every weight, all ${gpus} GPUs):\n${describePlan(full)}${remoteText}`,
        "Which one?",
      ].join("\n\n");
      await services.api.sendMessage(chatId, text, {
        reply_markup: withRemotes(
          new InlineKeyboard()
            .text("Start LoRA", `train:go:${plan.dataset.id}:lora`)
            .row()
            .text(`Full fine-tuning on ${gpus} GPUs`, `train:go:${plan.dataset.id}:full`),
        ),
      });
    } catch (error) {
      if (error instanceof NoDatasetError) {
        await services.api.sendMessage(
          chatId,
          "There is no dataset yet. Build one from your history now, then train?",
          {
            reply_markup: new InlineKeyboard()
              .text("Build it, then train", "train:build")
              .text("Not now", "train:no"),
          },
        );
      } else if (error instanceof NothingToTrainError || error instanceof TrainPlanError) {
        // A refusal the owner can act on (e.g. the trainer config to set for this base): say it.
        await services.api.sendMessage(chatId, `${error.message}.`);
      } else throw error;
    }
  };

  owner.command("train", (ctx) => confirm(ctx.chat.id));

  composer.callbackQuery("train:build", async (ctx) => {
    if (ctx.role !== "owner") return ctx.answerCallbackQuery();
    await ctx.answerCallbackQuery();
    await ctx.editMessageText("Building the dataset first; the training plan follows.");
    const chatId = ctx.chat?.id ?? services.ownerId;
    startDatasetJob(services, chatId, () => confirm(chatId));
  });

  composer.callbackQuery("train:no", async (ctx) => {
    if (ctx.role !== "owner") return ctx.answerCallbackQuery();
    await ctx.answerCallbackQuery();
    await ctx.editMessageText("Not now: nothing was queued.");
  });

  composer.callbackQuery(/^train:go:(\d+)(?::(lora|full))?$/, async (ctx) => {
    if (ctx.role !== "owner") return ctx.answerCallbackQuery();
    await ctx.answerCallbackQuery({ text: "Queued" });
    const plan = await planRun(services, {
      datasetId: Number(ctx.match[1]),
      method: ctx.match[2] === "full" ? "full" : "lora",
    });
    const chatId = ctx.chat?.id ?? services.ownerId;
    const run = await queueRun(services, plan, chatId);
    await ctx.editMessageText(`${describePlan(plan)}\n\nQueued as run ${run.id}.`);
    followTraining(services, chatId, run);
    await services.training.kick();
  });

  composer.callbackQuery(/^train:on:(\d+):(\d+)$/, async (ctx) => {
    if (ctx.role !== "owner") return ctx.answerCallbackQuery();
    const remote = services.training.remote;
    const target = remote?.targets[Number(ctx.match[2])];
    if (!remote || !target) return ctx.answerCallbackQuery({ text: "That machine is no longer configured" });
    await ctx.answerCallbackQuery({ text: `Checking ${target.host}…` });
    const facts = await remote.probe(target);
    if (facts instanceof Error) {
      await ctx.editMessageText(`Nothing was queued: ${facts.message}.`);
      return;
    }
    const plan = await planRun(services, {
      datasetId: Number(ctx.match[1]),
      target: target.runTarget,
      hardware: remoteHardware(facts),
    });
    const chatId = ctx.chat?.id ?? services.ownerId;
    const run = await queueRun(services, plan, chatId);
    await ctx.editMessageText(
      `${describePlan(plan)}\n\nQueued as run ${run.id}; ${target.host} sets up and trains it.`,
    );
    followTraining(services, chatId, run);
    remote.start(target, (message) => services.api.sendMessage(chatId, `${target.host}: ${message}`));
  });

  owner.command("model", async (ctx) => {
    const adapters = await runs.listAdapters();
    await ctx.reply(modelList(services.model.name, adapters, services.model.adapter()?.label), {
      reply_markup: modelKeyboard(adapters),
    });
  });

  composer.callbackQuery(/^model:use:(base|\d+)$/, async (ctx) => {
    if (ctx.role !== "owner") return ctx.answerCallbackQuery();
    const choice = ctx.match[1] === "base" ? null : Number(ctx.match[1]);
    try {
      await services.model.use(choice);
    } catch (error) {
      await ctx.answerCallbackQuery({ text: `Cannot use it: ${(error as Error).message}`.slice(0, 200) });
      return;
    }
    await ctx.answerCallbackQuery({ text: choice === null ? "The base model answers now" : "Switched" });
    const adapters = await runs.listAdapters();
    await ctx.editMessageText(modelList(services.model.name, adapters, services.model.adapter()?.label), {
      reply_markup: modelKeyboard(adapters),
    });
  });

  return composer;
}

function modelList(base: string, adapters: Adapter[], activeLabel: string | undefined): string {
  const lines = [`Base: ${base}${activeLabel ? "" : " ✓ (no adapter)"}`];
  for (const adapter of adapters) {
    const tuned = (adapter.metrics?.tuned as { overall?: Overall } | undefined)?.overall;
    const mark = activeLabel === `adapter:${adapter.id}` ? " ✓" : "";
    const loss = tuned ? `, held-out loss ${tuned.content_loss.toFixed(3)}` : "";
    lines.push(
      `${adapter.id}. ${adapter.name} (${describeKind(adapter)}) on ${adapter.baseName}, ${adapter.createdAt.toISOString().slice(0, 16).replace("T", " ")}${loss}${mark}`,
    );
  }
  if (activeLabel?.startsWith("file:"))
    lines.push(`Serving ${activeLabel.slice(5)} (from the configuration).`);
  if (adapters.length === 0) lines.push("No trained adapters yet: /train");
  return lines.join("\n");
}

function modelKeyboard(adapters: Adapter[]): InlineKeyboard {
  const keyboard = new InlineKeyboard();
  for (const adapter of adapters.slice(-8))
    keyboard.text(`Use ${adapter.name}`, `model:use:${adapter.id}`).row();
  return keyboard.text("Base model only", "model:use:base");
}

/** A remote's hardware as the plan takes it (pure). */
function remoteHardware(facts: Preflight): { gpus: WorkerGpu[]; cpus: number } {
  return { gpus: facts.gpus.map((gpu) => ({ name: gpu.name, memory_gb: gpu.memoryGb })), cpus: 0 };
}

/**
 * Each configured remote machine probed (in parallel), with its plan's time and a button, or the
 * reason it is not offered (unreachable, no config for its GPU).
 */
async function remotePlans(
  services: BotServices,
  datasetId: number,
): Promise<{ index: number; line: string; button?: string }[]> {
  const remote = services.training.remote;
  if (!remote) return [];
  return Promise.all(
    remote.targets.map(async (target, index) => {
      const facts = await remote.probe(target);
      if (facts instanceof Error) return { index, line: `${target.host}: not offered (${facts.message})` };
      const gpu = facts.gpus[0];
      const hardware = gpu ? `${gpu.name.replace(/^NVIDIA\s+/, "")}, ${Math.round(gpu.memoryGb)} GB` : "CPU";
      try {
        const plan = await planRun(services, {
          datasetId,
          target: target.runTarget,
          hardware: remoteHardware(facts),
        });
        return {
          index,
          line: `${target.host} (${hardware}): ${describeEstimate(plan.estimate).total}${remote.running(target) ? ", its worker is running" : ""}`,
          button: `Train on ${target.host} (${hardware})`,
        };
      } catch (error) {
        if (!(error instanceof TrainPlanError || error instanceof NothingToTrainError)) throw error;
        return { index, line: `${target.host} (${hardware}): not offered (${error.message})` };
      }
    }),
  );
}
