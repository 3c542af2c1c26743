import fs from "node:fs/promises";
import readline from "node:readline/promises";
import { type Command, Option } from "commander";
import { type App, createLocalWorker } from "../app.ts";
import { ownerTimeZone } from "../config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../dataset/build.usecase.ts";
import { formatDuration } from "../training/plan.ts";
import { followRun, PHASE_LABELS } from "../training/progress.ts";
import { describeFailure, FAILURE_TAIL_LINES, failureNote, formatRunLog } from "../training/run-log.ts";
import { describePlan, planRun, queueRun, type RunTarget } from "../training/train.usecase.ts";
import {
  NoDatasetError,
  NoSuchRunError,
  RunFailedError,
  TrainerWorkerError,
} from "../training/training.errors.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { integer, keyValue, many, runTarget } from "./options.ts";
import { progressBar } from "./progress.ts";
import { table } from "./table.ts";

type TrainOptions = {
  dataset?: number;
  method: "lora" | "full";
  config?: string;
  set: [string, string][];
  yes?: boolean;
  detach?: boolean;
  on?: RunTarget;
};

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
    .addOption(
      new Option(
        "--method <lora|full>",
        "LoRA, or full fine-tuning (every weight, sharded over the worker's GPUs; TWIN_TRAIN_CONFIG_FULL)",
      )
        .choices(["lora", "full"])
        .default("lora"),
    )
    .option(
      "--config <file>",
      "a config from trainer/configs (default: TWIN_TRAIN_CONFIG, or _FULL; unset: the one for the base's size and the worker's GPUs)",
    )
    .option("--set <key=value>", "override a trainer config key (repeatable)", many(keyValue("--set")), [])
    .option(
      "--on <target>",
      "which worker trains it: local, remote:<host> (`twin worker remote`) or any (default)",
      runTarget("--on"),
    )
    .option("-y, --yes", "do not ask for confirmation")
    .option("--detach", "queue and return; a worker (or the bot's) trains it")
    .action(async (options: TrainOptions, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const method = options.method;
      const overrides = Object.fromEntries(options.set);
      config.training = {
        ...config.training,
        configFile: options.config ?? config.training.configFile,
        fullConfigFile: options.config ?? config.training.fullConfigFile,
        overrides: { ...config.training.overrides, ...overrides },
      };
      await withDatabase(config, async ({ database, repositories }) => {
        const app = { config, database, repositories };
        const datasetId = options.dataset;
        const target = options.on;
        const plan = await planRun(app, { datasetId, method, target }).catch(async (error) => {
          if (!(error instanceof NoDatasetError)) throw error;
          process.stdout.write(
            "no dataset yet: building one with the defaults (`twin dataset` has the options)…\n",
          );
          const owner = await app.repositories.history.getOwner();
          const built = await buildDataset(app, {
            ...defaultDatasetOptions(ownerTimeZone(config.timeZone, owner?.timeZone)),
            staleSeconds: config.training.staleSeconds,
          });
          if (built.memoryOff !== undefined)
            process.stderr.write(`twin: memory is off for this dataset: ${built.memoryOff}\n`);
          process.stdout.write(`built dataset ${built.datasetId}\n`);
          return planRun(app, { datasetId: built.datasetId, method, target });
        });
        process.stdout.write(`${describePlan(plan)}\n`);
        if (!options.yes && !(await confirm("Start training? [y/N] "))) {
          process.stdout.write("nothing queued\n");
          return;
        }
        const run = await queueRun(app, plan);
        process.stdout.write(`queued run ${run.id}\n`);
        if (!options.detach) await follow({ config, database, repositories }, run.id);
      });
    });
  train
    .command("list")
    .description("training runs, newest first")
    .action(async (_options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const rows = await withDatabase(config, ({ repositories }) => repositories.runs.list(30));
      const stale = (heartbeat: Date | null) =>
        heartbeat && Date.now() - heartbeat.getTime() > config.training.staleSeconds * 1000;
      const out = table(["run", "status", "dataset", "step", "created", "on", "worker", "note"]);
      for (const run of rows) {
        out.push([
          run.id,
          run.status === "running" && stale(run.heartbeatAt) ? "running (worker silent)" : run.status,
          run.datasetId,
          `${run.step}/${run.maxSteps ?? "?"}`,
          run.createdAt.toISOString().slice(0, 16).replace("T", " "),
          run.target,
          run.worker ?? "",
          run.status === "failed" ? failureNote(run.id, run.error) : (run.error ?? ""),
        ]);
      }
      process.stdout.write(rows.length ? `${out.toString()}\n` : "no runs yet: twin train\n");
    });
  train
    .command("cancel <run>")
    .description("cancel a run (a running one stops at its next step)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const status = await withDatabase(config, ({ repositories }) =>
        repositories.runs.requestCancel(Number(id)),
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
    .command("log <run>")
    .description(
      "what a run printed besides its progress (library warnings, tracebacks), each attempt headed by its worker",
    )
    .option("--tail <n>", "only the last n lines", integer("--tail", 1))
    .action(async (id: string, options: { tail?: number }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const runId = Number(id);
      const { run, events } = await withDatabase(config, async ({ repositories }) => ({
        run: await repositories.runs.get(runId),
        events: await repositories.runs.log(runId),
      }));
      if (!run) throw new NoSuchRunError(`there is no run ${id} (\`twin train list\` shows them)`);
      const lines = formatRunLog(events);
      const printed = options.tail ? lines.slice(-options.tail) : lines;
      process.stdout.write(
        events.some((event) => event.event === "log_line")
          ? `${printed.join("\n")}\n`
          : `run ${id} (${run.status}) has printed nothing besides its progress${printed.length ? `:\n${printed.join("\n")}` : ""}\n`,
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
      await withDatabase(config, async ({ database, repositories }) => {
        const runs = repositories.runs;
        const run = await runs.get(Number(id));
        if (!run) throw new Error(`there is no run ${id}`);
        if (run.status !== "queued" && !(await runs.requeue(run.id))) {
          throw new Error(`run ${id} is ${run.status}: only failed or cancelled runs go back to the queue`);
        }
        if (!options.detach) await follow({ config, database, repositories }, run.id);
      });
    });
  train
    .command("chart <run> <file>")
    .description("write a finished run's loss chart (.png or .svg)")
    .action(async (id: string, file: string, _options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const kind = file.toLowerCase().endsWith(".svg") ? "chart_svg" : "chart_png";
      const data = await withDatabase(config, ({ repositories }) => repositories.runs.file(Number(id), kind));
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

/**
 * Follows a run with a terminal bar (phase, step n/N, ETA); a local worker trains it unless
 * TWIN_WORKER=external. Nothing the trainer prints reaches the bar: a run's own output is its log
 * (`twin train log`), quoted when it fails; what the worker prints between runs is shown only if it
 * exits with an error. Ctrl+C re-queues the run.
 */
async function follow(app: App, runId: number): Promise<void> {
  const { config } = app;
  const { runs } = app.repositories;
  const printed: string[] = []; // the worker's lines outside a run, for its error
  let workerFailed: (error: Error) => void = () => {};
  const workerExit = new Promise<never>((_, reject) => {
    workerFailed = reject;
  });
  workerExit.catch(() => {});
  const worker = createLocalWorker(
    app,
    (line) => {
      if (line.startsWith("{")) return; // an event: the database has it too
      printed.push(line);
      if (printed.length > 20) printed.shift();
    },
    (code, signal) => {
      if (signal !== null || code === 0) return; // stopped by us, or done with the queue
      const why = code === null ? "could not start" : `exited with code ${code}`;
      workerFailed(
        new TrainerWorkerError(
          `the trainer worker ${why} before run ${runId} ended (\`twin train list\` shows where it is)${printed.length ? `; it printed:\n${printed.join("\n")}` : ""}`,
        ),
      );
    },
  );
  // A bar on a terminal; piped or in a log, a line per phase (waiting, loading, training, …) and
  // one every 30 s.
  const bar = progressBar({
    format: "run {run} |{bar}| {phase} | step {value}/{total} | loss {loss} | held-out {eval} | ETA {eta}",
    stage: "phase",
  });
  const interrupted = new AbortController();
  const onInterrupt = () => interrupted.abort();
  process.once("SIGINT", onInterrupt);
  bar.start(1, 0, { run: runId, loss: "-", eval: "-", phase: PHASE_LABELS.queued, eta: "-" });
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
            phase: PHASE_LABELS[progress.phase],
            eta:
              progress.etaSeconds !== null && progress.phase !== "done"
                ? formatDuration(progress.etaSeconds)
                : "-",
          });
        },
      }),
      workerExit,
      new Promise<never>((_, reject) =>
        interrupted.signal.addEventListener("abort", () => reject(new Error("interrupted"))),
      ),
    ]);
    bar.stop();
    if (run.status === "failed") {
      const tail = await runs.logTail(runId, FAILURE_TAIL_LINES);
      throw new RunFailedError(`run ${runId} failed: ${describeFailure(runId, run.error, tail)}`);
    }
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
