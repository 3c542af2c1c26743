import type { Command } from "commander";
import { huggingFaceFromEnvironment } from "../config/env.ts";
import { describeKind } from "../inference/serving.ts";
import { hubEndpoint } from "../models/hub.ts";
import type { BaseModel } from "../models/models.repository.ts";
import { pullModel } from "../models/pull.ts";
import { trainerWeightsTool } from "../models/weights.ts";
import { plural } from "../plural.ts";
import { trainerDir, trainerPython } from "../training/local-worker.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { progressBar } from "./progress.ts";
import { table } from "./table.ts";

const MB = 1e6;

function registered(row: BaseModel): string {
  return `registered ${row.name}: ${row.architecture}, ${plural(row.layers, "layer")}, ${row.sizeMb} MB, fingerprint ${row.fingerprint.slice(0, 12)}…${row.isDefault ? " (default)" : ""}\n`;
}

export function registerModelCommand(program: Command): void {
  const model = program.command("model").description("base models: the GGUF served and the weights trained");
  model
    .command("add <gguf>")
    .description("register a base model (reads its architecture and fingerprint)")
    .option("--hf <dir-or-id>", "the same model's HF weights, for the trainer")
    .option("--name <name>", "what to call it (default: the file name)")
    .option("--default", "serve it by default")
    .action(
      async (gguf: string, options: { hf?: string; name?: string; default?: boolean }, command: Command) => {
        const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
        const row = await withDatabase(config, ({ repositories }) =>
          repositories.models.add({
            ggufPath: gguf,
            hfSource: options.hf,
            name: options.name,
            makeDefault: options.default ?? false,
          }),
        );
        process.stdout.write(registered(row));
      },
    );
  model
    .command("pull <source>")
    .description(
      "download a base model from Hugging Face (or the mirror in HF_ENDPOINT; HF_TOKEN for gated ones), check it and register it",
    )
    .addHelpText(
      "after",
      "\n<source>: a catalogue name (its Q4_K_M GGUF), hf:<org>/<repo>/<file>.gguf or hf:<org>/<repo>:<quant>.\nSplit GGUFs come whole; Ctrl-C keeps what arrived, and the same command resumes it.\n--weights: the same model's safetensors for training, fetched beside it by the trainer and checked\n(architecture, layers, every tensor's shape, vocabulary, special tokens, dequantized values) to be\nthe same model before anything is registered. Without it, a catalogue name records its weights\nrepository and the training worker fetches and checks it on first use.",
    )
    .option("--name <name>", "what to call it (default: the catalogue name, or the file name)")
    .option("--default", "serve it by default")
    .option(
      "--weights <org/repo|dir>",
      "the same model's HF weights for training: fetch them now and check the pair",
    )
    .action(
      async (
        source: string,
        options: { name?: string; default?: boolean; weights?: string },
        command: Command,
      ) => {
        const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
        const { endpoint, token } = huggingFaceFromEnvironment();
        const hub = { endpoint: hubEndpoint(endpoint), token };
        // A bar on a terminal; piped or in a log, a plain line every 30 s.
        const bar = progressBar({
          format: "pulling {file} |{bar}| {percentage}% | {value}/{total} MB | {speed} MB/s",
          etaBuffer: 50,
        });
        // The speed counts this run's bytes: a resumed pull starts with some already there.
        let since: { at: number; bytes: number } | undefined;
        let file = "";
        const row = await withDatabase(
          config,
          async ({ repositories }, signal) => {
            try {
              const result = await pullModel(
                {
                  models: repositories.models,
                  hub,
                  store: config.training.modelStore,
                  weights: trainerWeightsTool({
                    python: () => trainerPython(config.training.python),
                    cwd: trainerDir,
                  }),
                },
                {
                  source,
                  name: options.name,
                  makeDefault: options.default ?? false,
                  weights: options.weights,
                  signal,
                  onProgress: (progress) => {
                    if (progress.stage === "checked") {
                      file = progress.files[0]?.path ?? "";
                      process.stderr.write(
                        `${progress.uri}: ${plural(progress.files.length, "file")}, ${Math.round(progress.bytes / MB)} MB → ${progress.folder}\n`,
                      );
                      bar.start(Math.round(progress.bytes / MB), 0, { file, speed: 0 });
                    } else if (progress.stage === "downloading") {
                      since ??= { at: performance.now(), bytes: progress.bytes };
                      const seconds = (performance.now() - since.at) / 1000;
                      bar.update(Math.round(progress.bytes / MB), {
                        speed: ((progress.bytes - since.bytes) / MB / Math.max(seconds, 0.001)).toFixed(1),
                      });
                    } else if (progress.stage === "verifying") {
                      bar.stop();
                      process.stderr.write(`checking the sha256 of ${progress.file}\n`);
                    } else if (progress.stage === "weights") {
                      process.stderr.write(`${progress.line}\n`);
                    } else if (progress.stage === "pairing") {
                      process.stderr.write(`checking that ${progress.weights} and the GGUF are one model\n`);
                    } else {
                      const { report } = progress;
                      process.stderr.write(
                        `one model: ${report.architecture}, ${plural(report.layers, "layer")}, ${plural(report.tensors, "tensor")} of matching shape, ${plural(report.vocabulary, "token", { grouped: true })}, values of ${plural(report.compared, "tensor")} within their quantization's tolerance\n`,
                      );
                    }
                  },
                },
              );
              return result.model;
            } finally {
              bar.stop();
            }
          },
          // Ctrl-C: the downloader closes its files (keeping them to resume) before the process exits.
          { graceMs: 10_000 },
        );
        process.stdout.write(registered(row));
      },
    );
  model
    .command("list")
    .description("registered base models")
    .action(async (_options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const rows = await withDatabase(config, ({ repositories }) => repositories.models.list());
      const out = table(["", "name", "architecture", "layers", "MB", "fingerprint", "GGUF", "HF weights"]);
      for (const row of rows) {
        out.push([
          row.isDefault ? "*" : "",
          row.name,
          row.architecture,
          row.layers,
          row.sizeMb,
          `${row.fingerprint.slice(0, 12)}…`,
          row.ggufPath,
          row.hfSource
            ? `${row.hfSource}${row.hfRevision ? `@${row.hfRevision.slice(0, 12)}` : ""}${row.weightsFingerprint ? " (paired)" : ""}`
            : "— (the GGUF)",
        ]);
      }
      process.stdout.write(
        rows.length ? `${out.toString()}\n` : "no models yet: twin model add <file.gguf>\n",
      );
      const adapters = await withDatabase(config, ({ repositories }) => repositories.runs.listAdapters());
      if (adapters.length === 0) return;
      const trained = table(["", "id", "name", "kind", "base", "run", "created", "held-out loss (text)"]);
      for (const adapter of adapters) {
        const tuned = (adapter.metrics?.tuned as { overall?: { content_loss: number } } | undefined)?.overall;
        trained.push([
          adapter.active ? "*" : "",
          adapter.id,
          adapter.name,
          describeKind(adapter),
          adapter.baseName,
          adapter.runId,
          adapter.createdAt.toISOString().slice(0, 16).replace("T", " "),
          tuned ? tuned.content_loss.toFixed(3) : "",
        ]);
      }
      process.stdout.write(
        `${trained.toString()}\n* active: new conversations use it (twin model use <id|base>)\n`,
      );
    });
  model
    .command("use <adapter>")
    .description("make a trained adapter active for new conversations, or `base` for none")
    .action(async (choice: string, _options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      if (choice !== "base" && !/^\d+$/.test(choice))
        throw new Error(`${choice}: expected an adapter id or base`);
      await withDatabase(config, ({ repositories }) =>
        repositories.runs.activate(choice === "base" ? null : Number(choice)),
      );
      process.stdout.write(
        choice === "base" ? "the base model answers alone\n" : `adapter ${choice} is active\n`,
      );
    });
}
