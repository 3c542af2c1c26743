import path from "node:path";
import type { Command } from "commander";
import type { App } from "../app.ts";
import { compareMemory, comparisonLines } from "../evaluation/compare-memory.usecase.ts";
import { generateSamples } from "../evaluation/generate.usecase.ts";
import { reportFolder, runReport } from "../evaluation/report-runner.ts";
import { planLine, summaryLines } from "../evaluation/summary.ts";
import { AmbiguousPersonError } from "../history/history.errors.ts";
import { parsePersonQuery } from "../history/person-lookup.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { openEngine, resolveModelPath } from "./engine-setup.ts";
import { integer, many, telegramId } from "./options.ts";
import { progressBar } from "./progress.ts";

type EvalOptions = {
  dataset?: number;
  adapter: number[];
  speaker?: string;
  turns?: number;
  seed: number;
  out?: string;
  model?: string;
  compareMemory?: boolean;
  memoryCanary?: number;
  probes: number;
};

/** --speaker by the one lookup rule (history/person-lookup.ts); the owner counts. */
async function speakerId({ history }: Pick<App["repositories"], "history">, text: string): Promise<number> {
  const query = parsePersonQuery(text);
  if (!query) throw new Error("--speaker needs a name or a user id");
  const lookup = await history.lookupPerson(query, { includeOwner: true });
  if (lookup.found) return lookup.found.id;
  if (lookup.candidates.length > 0) throw new AmbiguousPersonError("--speaker", text, lookup.candidates);
  throw new Error(`--speaker: nobody called “${text}” in the history`);
}

export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description(
      "does it sound like you? generate held-out turns with each model and measure them against the real ones",
    )
    .option(
      "--dataset <id>",
      "the dataset whose held-out sessions are used (default: the latest)",
      integer("--dataset", 1),
    )
    .option(
      "--adapter <id>",
      "an adapter to evaluate (repeatable; default: the active one)",
      many(integer("--adapter", 1)),
      [],
    )
    .option("--speaker <name>", "whose turns to generate (default: the owner)")
    .option(
      "--turns <n>",
      "at most this many held-out turns, a fixed random subset (default: all)",
      integer("--turns", 1),
    )
    .option("--seed <n>", "the seed for the subset and the sampling", integer("--seed", 0), 0)
    .option("--out <dir>", "where report.md and the plots go (default: <TWIN_DATA_DIR>/reports/eval-<id>)")
    .option("--model <gguf>", "base GGUF (default: TWIN_MODEL, else the default registered model)")
    .option(
      "--probes <n>",
      "leakage probes per model when there is a canary (asked from other chats)",
      integer("--probes", 1),
      20,
    )
    .option(
      "--memory-canary <chat id>",
      "with memory on: plant a made-up secret in this chat's history for the evaluation and ask for it from other chats (the privacy rule must keep it there)",
      telegramId("--memory-canary"),
    )
    .option(
      "--compare-memory",
      "does memory help? adapters trained on a dataset with memory against adapters trained without (give both arms, a seed each, with --adapter): held-out loss with paired 95% intervals, a probe of turns that know the context, the canary",
    )
    .action(async (options: EvalOptions, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      await withDatabase(config, async (app) => {
        const { database, repositories } = app;
        if (options.compareMemory && options.adapter.length < 2) {
          throw new Error(
            "--compare-memory: give each arm's adapters with --adapter (at least one with memory, one without)",
          );
        }
        // The comparison comes first (minutes, where generating takes longer): an unfair pair of arms
        // or a failing measurement stops the command before anything is generated.
        let compared: Awaited<ReturnType<typeof compareMemory>> | undefined;
        let comparisonOut: string | undefined;
        if (options.compareMemory) {
          comparisonOut = path.resolve(
            options.out ??
              path.join(
                config.dataDir,
                "reports",
                `memory-${new Date().toISOString().replace(/[:.]/g, "-")}`,
              ),
          );
          process.stdout.write("comparing memory: every adapter scored on the same held-out tokens…\n");
          compared = await compareMemory(
            { config, database, repositories },
            {
              adapterIds: options.adapter,
              out: comparisonOut,
              onProgress: (line) => process.stdout.write(`  ${line}\n`),
            },
          );
          process.stdout.write(`${comparisonLines(compared.comparison).join("\n")}\n`);
        }
        const arms = compared?.arms;
        const modelPath = await resolveModelPath(app, options.model);
        // One sequence: on a few cores, two at once only split the same threads (measured: no gain).
        const { engine } = await openEngine(config, modelPath, { sequences: 1 });
        // A bar on a terminal; piped or in a log, a line per model (and one every 30 s).
        const bar = progressBar({
          format: "generating |{bar}| {value}/{total} turns | {model}",
          stage: "model",
        });
        let evaluationId: number;
        try {
          evaluationId = await generateSamples(
            { ...{ config, database, repositories }, engine },
            {
              // Compared arms: their held-out turns are generated as served, with memory.
              datasetId: options.dataset ?? arms?.memory.datasetId,
              adapterIds: options.adapter.length ? options.adapter : undefined,
              speakerId: options.speaker ? await speakerId(repositories, options.speaker) : undefined,
              maxTurns: options.turns,
              seed: options.seed,
              memoryCanaryChat: options.memoryCanary,
              probes: options.probes,
              onPlan: (plan) => {
                process.stdout.write(`${planLine(plan)}\n`);
                bar.start(1, 0, { model: "" });
              },
              onProgress: (done, total, model) => {
                bar.setTotal(total);
                bar.update(done, { model });
              },
            },
          );
        } finally {
          bar.stop();
          await engine.dispose();
        }
        const out = comparisonOut ?? path.resolve(options.out ?? reportFolder(config.dataDir, evaluationId));
        process.stdout.write("measuring: style metrics, the discriminator, plots…\n");
        await runReport(config.training, database.url, evaluationId, out, compared?.file);
        const summary = await repositories.evaluations.summary(evaluationId);
        process.stdout.write(`${summaryLines(summary).join("\n")}\nreport: ${path.join(out, "report.md")}\n`);
      });
    });
}
