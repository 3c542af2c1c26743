import path from "node:path";
import type { Command } from "commander";
import { importDesktopExport } from "../history/desktop-import/import.usecase.ts";
import { indexInBackground } from "./background-index.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { progressBar } from "./progress.ts";
import { table as makeTable } from "./table.ts";

const MB = 1024 * 1024;

export function registerImportCommand(program: Command): void {
  program
    .command("import")
    .description("import a Telegram Desktop export (result.json or its folder) into the history store")
    .argument("<export>", "result.json, or the export folder that holds it")
    .option(
      "--owner <id|name>",
      "whose history this is, for exports without personal_information: a user id, a channel id (-100…) or a name that wrote in it",
    )
    .action(async (input: string, options: { owner?: string }, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const config = resolveConfig(globals);
      // A bar on a terminal; piped or in a log, a plain line every 30 s.
      const bar = progressBar({
        format: "importing |{bar}| {percentage}% | {value}/{total} MB | {messages} messages | {rate} msg/s",
        etaBuffer: 50,
      });
      // A stop signal ends the import at its next chunk: the batch being written commits.
      const summary = await withDatabase(
        config,
        async ({ repositories }, signal) => {
          const started = performance.now();
          bar.start(0, 0, { messages: 0, rate: 0 });
          try {
            return await importDesktopExport(
              { historyRepository: repositories.history },
              {
                input,
                owner: options.owner,
                timeZone: config.timeZone,
                batchSize: config.importBatchSize,
                staleSeconds: config.training.staleSeconds,
                signal,
                onProgress: ({ bytes, totalBytes, messages }) => {
                  const seconds = (performance.now() - started) / 1000;
                  bar.setTotal(Math.ceil(totalBytes / MB));
                  bar.update(Math.floor(bytes / MB), {
                    messages: messages.toLocaleString("en-US"),
                    rate: Math.round(messages / Math.max(seconds, 0.001)).toLocaleString("en-US"),
                  });
                },
              },
            );
          } finally {
            bar.stop();
          }
        },
        { graceMs: 8_000 },
      );
      const table = makeTable(["import", path.basename(summary.file)]);
      const skipped = Object.values(summary.skipped).reduce((a, b) => a + b, 0);
      table.push(
        ["owner", `${summary.owner.name ?? "?"} (${summary.owner.id})`],
        ["time zone", summary.timeZone],
        ["chats", summary.chats.toLocaleString("en-US")],
        ["messages read", summary.messages.toLocaleString("en-US")],
        ["new", summary.new.toLocaleString("en-US")],
        ["updated", summary.updated.toLocaleString("en-US")],
        ["unchanged", summary.unchanged.toLocaleString("en-US")],
        ["skipped", skipped.toLocaleString("en-US")],
        ...Object.entries(summary.skipped).map(([reason, n]) => [`  ${reason}`, n.toLocaleString("en-US")]),
        ["time", `${summary.seconds.toFixed(1)} s`],
      );
      process.stdout.write(`${table.toString()}\n`);
      for (const warning of summary.warnings) process.stdout.write(`warning: ${warning}\n`);
      // A stopped or failed import threw before this: only a finished one leaves a run behind.
      indexInBackground(config);
    });
}
