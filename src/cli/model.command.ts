import type { Command } from "commander";
import { createModelsRepository } from "../models/models.repository.ts";
import { createRunsRepository } from "../training/runs.repository.ts";
import { describeKind } from "../training/serving.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { table } from "./table.ts";

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
        const row = await withDatabase(config, (database) =>
          createModelsRepository(database).add({
            ggufPath: gguf,
            hfSource: options.hf,
            name: options.name,
            makeDefault: options.default ?? false,
          }),
        );
        process.stdout.write(
          `registered ${row.name}: ${row.architecture}, ${row.layers} layers, ${row.sizeMb} MB, fingerprint ${row.fingerprint.slice(0, 12)}…${row.isDefault ? " (default)" : ""}\n`,
        );
      },
    );
  model
    .command("list")
    .description("registered base models")
    .action(async (_options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const rows = await withDatabase(config, (database) => createModelsRepository(database).list());
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
          row.hfSource ?? "— (the GGUF)",
        ]);
      }
      process.stdout.write(
        rows.length ? `${out.toString()}\n` : "no models yet: twin model add <file.gguf>\n",
      );
      const adapters = await withDatabase(config, (database) =>
        createRunsRepository(database).listAdapters(),
      );
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
      await withDatabase(config, (database) =>
        createRunsRepository(database).activate(choice === "base" ? null : Number(choice)),
      );
      process.stdout.write(
        choice === "base" ? "the base model answers alone\n" : `adapter ${choice} is active\n`,
      );
    });
}
