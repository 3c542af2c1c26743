import fs from "node:fs/promises";
import readline from "node:readline/promises";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { machineTimeZone } from "../config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../dataset/build.usecase.ts";
import type { Database } from "../db/client.ts";
import { createHistoryRepository } from "../history/history.repository.ts";
import { LocalWorker } from "../training/local-worker.ts";
import { formatDuration } from "../training/plan.ts";
import { followRun } from "../training/progress.ts";
import { createRunsRepository } from "../training/runs.repository.ts";
import { describePlan, NoDatasetError, planRun, queueRun } from "../training/train.usecase.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { integer } from "./options.ts";
import { table } from "./table.ts";

type TrainOptions = {
  dataset?: number;
  method: string;
  config?: string;
  set: string[];
  yes?: boolean;
  detach?: boolean;
};

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerTrainCommand(program: Command): void {
  const train = program
    .command("train")
    .description("fine-tune on the latest dataset: a run in the training queue");
  train
    .command("start", { isDefault: true })
    .description("queue a run (confirming dataset, config and estimate), then follow it to the end")
    .option(
      "--dataset <id>",
      "train on this dataset (default: the latest ready one)",
      integer("--dataset", 1),
    )
    .option(
      "--method <lora|full>",
      "LoRA, or full fine-tuning (every weight, sharded over the worker's GPUs; TWIN_TRAIN_CONFIG_FULL)",
      "lora",
    )
    .option("--config <file>", "a config from trainer/configs (default: TWIN_TRAIN_CONFIG, or _FULL)")
    .option("--set <key=value>", "override a trainer config key (repeatable)", collect, [])
    .option("-y, --yes", "do not ask for confirmation")
    .option("--detach", "queue and return; a worker (or the bot's) trains it")
    .action(async (options: TrainOptions, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      if (options.method !== "lora" && options.method !== "full")
        throw new Error(`--method ${options.method}: expected lora or full`);
      const method = options.method;
      const overrides = Object.fromEntries(
        options.set.map((pair) => {
          const [key, ...value] = pair.split("=");
          if (!key || value.length === 0) throw new Error(`--set ${pair}: expected key=value`);
          return [key, value.join("=")];
        }),
      );
      config.training = {
        ...config.training,
        configFile: options.config ?? config.training.configFile,
        fullConfigFile: options.config ?? config.training.fullConfigFile,
        overrides: { ...config.training.overrides, ...overrides },
      };
      await withDatabase(config, async (database) => {
        const datasetId = options.dataset;
        const plan = await planRun(database, config, { datasetId, method }).catch(async (error) => {
          if (!(error instanceof NoDatasetError)) throw error;
          process.stdout.write(
            "no dataset yet: building one with the defaults (`twin dataset` has the options)…\n",
          );
          const owner = await createHistoryRepository(database).getOwner();
          const built = await buildDataset(database, {
            ...defaultDatasetOptions(config.timeZone ?? owner?.timeZone ?? machineTimeZone()),
            staleSeconds: config.training.staleSeconds,
          });
          process.stdout.write(`built dataset ${built.datasetId}\n`);
          return planRun(database, config, { datasetId: built.datasetId, method });
        });
        process.stdout.write(`${describePlan(plan)}\n`);
        if (!options.yes && !(await confirm("Start training? [y/N] "))) {
          process.stdout.write("nothing queued\n");
          return;
        }
        const run = await queueRun(database, plan);
        process.stdout.write(`queued run ${run.id}\n`);
        if (!options.detach) await follow(database, config, run.id);
      });
    });
  train
    .command("list")
    .description("training runs, newest first")
    .action(async (_options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const rows = await withDatabase(config, (database) => createRunsRepository(database).list(30));
      const stale = (heartbeat: Date | null) =>
        heartbeat && Date.now() - heartbeat.getTime() > config.training.staleSeconds * 1000;
      const out = table(["run", "status", "dataset", "step", "created", "worker", "note"]);
      for (const run of rows) {
        out.push([
          run.id,
          run.status === "running" && stale(run.heartbeatAt) ? "running (worker silent)" : run.status,
          run.datasetId,
          `${run.step}/${run.maxSteps ?? "?"}`,
          run.createdAt.toISOString().slice(0, 16).replace("T", " "),
          run.worker ?? "",
          run.error ?? "",
        ]);
      }
      process.stdout.write(rows.length ? `${out.toString()}\n` : "no runs yet: twin train\n");
    });
  train
    .command("cancel <run>")
    .description("cancel a run (a running one stops at its next step)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const status = await withDatabase(config, (database) =>
        createRunsRepository(database).requestCancel(Number(id)),
      );
      process.stdout.write(
        status === undefined
          ? `run ${id} is not queued or running\n`
          : status === "cancelled"
            ? `run ${id} cancelled\n`
            : `run ${id}: its worker stops at the next step\n`,
      );
    });
  train
    .command("resume <run>")
    .description(
      "put a failed or cancelled run back in the queue (it resumes from its checkpoint) and follow it",
    )
    .option("--detach", "queue and return")
    .action(async (id: string, options: { detach?: boolean }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      await withDatabase(config, async (database) => {
        const runs = createRunsRepository(database);
        const run = await runs.get(Number(id));
        if (!run) throw new Error(`there is no run ${id}`);
        if (run.status !== "queued" && !(await runs.requeue(run.id))) {
          throw new Error(`run ${id} is ${run.status}: only failed or cancelled runs go back to the queue`);
        }
        if (!options.detach) await follow(database, config, run.id);
      });
    });
  train
    .command("chart <run> <file>")
    .description("write a finished run's loss chart (.png or .svg)")
    .action(async (id: string, file: string, _options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const kind = file.toLowerCase().endsWith(".svg") ? "chart_svg" : "chart_png";
      const data = await withDatabase(config, (database) =>
        createRunsRepository(database).file(Number(id), kind),
      );
      if (!data) throw new Error(`run ${id} has no chart (it draws one when it succeeds)`);
      await fs.writeFile(file, data);
      process.stdout.write(`wrote ${file}\n`);
    });
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new Error("not a terminal: pass --yes to queue without confirmation");
  const prompt = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await prompt.question(question)).trim());
  } finally {
    prompt.close();
  }
}

/** Follows a run with a terminal bar; a local worker trains it unless TWIN_WORKER=external. Ctrl+C re-queues it. */
async function follow(
  database: Database,
  config: ReturnType<typeof resolveConfig>,
  runId: number,
): Promise<void> {
  const runs = createRunsRepository(database);
  const worker =
    config.training.worker === "external"
      ? undefined
      : new LocalWorker({
          config: config.training,
          databaseUrl: database.url,
          runs,
          onLine: (line) => {
            if (!line.startsWith('{"time"')) process.stderr.write(`trainer: ${line}\n`);
          },
        });
  const bar = new cliProgress.SingleBar(
    {
      format: "run {run} |{bar}| {value}/{total} steps | loss {loss} | held-out {eval} | {phase}",
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const interrupted = new AbortController();
  const onInterrupt = () => interrupted.abort();
  process.once("SIGINT", onInterrupt);
  bar.start(1, 0, { run: runId, loss: "-", eval: "-", phase: "waiting for a worker" });
  const kick = setInterval(() => void worker?.kick(), config.training.staleSeconds * 500);
  try {
    await worker?.kick();
    const { run } = await Promise.race([
      followRun(runs, runId, {
        onProgress: (progress) => {
          bar.setTotal(progress.maxSteps ?? 1);
          bar.update(progress.step, {
            loss: progress.loss?.toFixed(3) ?? "-",
            eval: progress.evalLoss?.toFixed(3) ?? "-",
            phase:
              progress.phase === "training" && progress.etaSeconds !== null
                ? `ETA ${formatDuration(progress.etaSeconds)}`
                : progress.phase,
          });
        },
      }),
      new Promise<never>((_, reject) =>
        interrupted.signal.addEventListener("abort", () => reject(new Error("interrupted"))),
      ),
    ]);
    bar.stop();
    if (run.status === "failed") throw new Error(`run ${runId} failed: ${run.error}`);
    const metrics = run.metrics as { base?: { overall: Overall }; tuned?: { overall: Overall } } | null;
    const out = table([`run ${runId}`, run.status]);
    out.push(["steps", run.step]);
    if (metrics?.base && metrics.tuned) {
      out.push(
        [
          "held-out loss, message text",
          `${metrics.base.overall.content_loss.toFixed(3)} → ${metrics.tuned.overall.content_loss.toFixed(3)}`,
        ],
        [
          "held-out loss, all trained tokens",
          `${metrics.base.overall.loss.toFixed(3)} → ${metrics.tuned.overall.loss.toFixed(3)}`,
        ],
      );
    }
    process.stdout.write(`${out.toString()}\n`);
    if (run.status === "succeeded")
      process.stdout.write("its adapter is now active; `twin model list` shows it\n");
  } catch (error) {
    bar.stop();
    if (!interrupted.signal.aborted) throw error;
    await worker?.stop(); // SIGTERM: a checkpoint, and the run goes back to the queue
    process.stdout.write(
      `\nstopped following run ${runId}; it stays queued and resumes from its checkpoint\n`,
    );
    process.exitCode = 130;
  } finally {
    clearInterval(kick);
    process.off("SIGINT", onInterrupt);
    await worker?.stop();
  }
}

type Overall = { loss: number; content_loss: number };
