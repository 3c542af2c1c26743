import path from "node:path";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { eq } from "drizzle-orm";
import { evaluations } from "../evaluation/evaluation.tables.ts";
import { generateSamples } from "../evaluation/generate.usecase.ts";
import { runReport } from "../evaluation/report-runner.ts";
import { summaryLines } from "../evaluation/summary.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { openEngine, resolveModelPath } from "./engine-setup.ts";
import { integer } from "./options.ts";

type EvalOptions = {
  dataset?: number;
  adapter: string[];
  speaker?: string;
  turns?: number;
  seed: number;
  out?: string;
  model?: string;
};

const collect = (value: string, previous: string[]) => [...previous, value];

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
    .option("--adapter <id>", "an adapter to evaluate (repeatable; default: the active one)", collect, [])
    .option("--speaker <name>", "whose turns to generate (default: the owner)")
    .option(
      "--turns <n>",
      "at most this many held-out turns, a fixed random subset (default: all)",
      integer("--turns", 1),
    )
    .option("--seed <n>", "the seed for the subset and the sampling", integer("--seed", 0), 0)
    .option("--out <dir>", "where report.md and the plots go (default: ./eval-<id>)")
    .option("--model <gguf>", "base GGUF (default: TWIN_MODEL, else the default registered model)")
    .action(async (options: EvalOptions, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      await withDatabase(config, async (database) => {
        const modelPath = await resolveModelPath(config, database, options.model);
        // One sequence: on a few cores, two at once only split the same threads (measured: no gain).
        const { engine } = await openEngine(config, modelPath, { sequences: 1 });
        const bar = new cliProgress.SingleBar(
          { format: "generating |{bar}| {value}/{total} turns | {model}", hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        let evaluationId: number;
        try {
          bar.start(1, 0, { model: "" });
          evaluationId = await generateSamples(
            { database, engine, config },
            {
              datasetId: options.dataset,
              adapterIds: options.adapter.length ? options.adapter.map(Number) : undefined,
              speaker: options.speaker,
              maxTurns: options.turns,
              seed: options.seed,
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
        const out = path.resolve(options.out ?? `eval-${evaluationId}`);
        process.stdout.write("measuring: style metrics, the discriminator, plots…\n");
        await runReport(config.training, database.url, evaluationId, out);
        const [row] = await database.db
          .select({ summary: evaluations.summary })
          .from(evaluations)
          .where(eq(evaluations.id, evaluationId));
        process.stdout.write(
          `${summaryLines(row?.summary ?? {}).join("\n")}\nreport: ${path.join(out, "report.md")}\n`,
        );
      });
    });
}
