import { setTimeout as sleep } from "node:timers/promises";
import { type Command, Option } from "commander";
import type { IndexOutcome, IndexProgress } from "../history/memory/memory.repository.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { progressBar } from "./progress.ts";

const n = (value: number) => value.toLocaleString("en-US");
/** How often a background run asks again while another process indexes. */
const BUSY_RETRY_MS = 5_000;

/** How far the memory index has come, for `twin memory status` and `twin stats` (pure). */
export function memoryIndexLine(progress: IndexProgress): string {
  if (progress.refusal) return `memory index: refused: ${progress.refusal}`;
  if (progress.indexed >= progress.total)
    return `memory index: complete (${n(progress.total)} ${progress.total === 1 ? "message" : "messages"})`;
  // Rounded down: 100% only once it is complete.
  const percent = Math.floor((100 * progress.indexed) / progress.total);
  return `memory index: ${n(progress.indexed)} of ${n(progress.total)} messages (${percent}%)`;
}

/** What `twin memory index` says once its run ended; `before` is the progress it started from. */
export function indexOutcomeLine(outcome: IndexOutcome, before: IndexProgress): string {
  switch (outcome.status) {
    case "refused":
      return `memory index refused: ${outcome.refusal ?? "this server cannot search Russian text"}`;
    case "busy":
      return `another twin process is indexing now (${n(outcome.indexed)} of ${n(outcome.total)} messages so far); it finishes the index`;
    case "cancelled":
      return `memory index stopped at ${n(outcome.indexed)} of ${n(outcome.total)} messages; \`twin memory index\` again goes on from there`;
    case "done":
      return before.indexed >= outcome.total && !before.refusal
        ? `memory index: already complete (${n(outcome.total)} messages)`
        : `memory index: complete, ${n(outcome.total)} messages (${n(Math.max(0, outcome.indexed - before.indexed))} newly indexed)`;
  }
}

export function registerMemoryCommand(program: Command): void {
  const memory = program
    .command("memory")
    .description("the search index the twin recalls past conversations from");

  memory
    .command("index")
    .description("index every message not yet indexed (imports start this in the background)")
    // Started by an import (background-index.ts): no bar, no output, just the work.
    .addOption(new Option("--background", "quiet, for the run an import starts").hideHelp())
    .action(async (options: { background?: boolean }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const quiet = options.background === true;
      const bar = progressBar({
        format: "indexing |{bar}| {percentage}% | {value}/{total} messages | {rate} msg/s",
        etaBuffer: 50,
      });
      // A stop signal ends the run after its current batch: what was indexed stays.
      const { outcome, before } = await withDatabase(
        config,
        async ({ repositories }, signal) => {
          const before = await repositories.memory.progress();
          // No bar for the background run, nor for a run with nothing to do.
          const shown = !quiet && before.indexed < before.total;
          const started = performance.now();
          let first: number | undefined;
          if (shown) bar.start(before.total, before.indexed, { rate: 0 });
          try {
            const run = () =>
              repositories.memory.index({
                signal,
                onProgress: !shown
                  ? undefined
                  : ({ indexed, total }) => {
                      first ??= indexed;
                      const seconds = (performance.now() - started) / 1000;
                      bar.setTotal(total);
                      bar.update(indexed, {
                        rate: n(Math.round((indexed - first) / Math.max(seconds, 0.001))),
                      });
                    },
              });
            let outcome = await run();
            // The run another process holds may have listed its messages before this import stored
            // its own: the background run waits for it, then indexes what it left.
            while (quiet && outcome.status === "busy" && !signal.aborted) {
              await sleep(BUSY_RETRY_MS, undefined, { signal }).catch(() => undefined);
              if (!signal.aborted) outcome = await run();
            }
            return { outcome, before };
          } finally {
            if (shown) bar.stop();
          }
        },
        { graceMs: 8_000 },
      );
      if (outcome.status === "refused") {
        if (!quiet) process.stderr.write(`twin: ${indexOutcomeLine(outcome, before)}\n`);
        process.exitCode = 1;
      } else if (!quiet) process.stdout.write(`${indexOutcomeLine(outcome, before)}\n`);
    });

  memory
    .command("status")
    .description("how far the memory index has come")
    .action(async (_options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const progress = await withDatabase(config, ({ repositories }) => repositories.memory.progress());
      process.stdout.write(`${memoryIndexLine(progress)}\n`);
    });
}
