import { type App, createApp } from "../app.ts";
import type { Config } from "../config/config.ts";
import { configFromEnvironment } from "../config/env.ts";
import { openDatabase } from "../db/client.ts";
import { indexInBackground } from "./background-index.ts";

/** Global flags every command accepts. */
export type GlobalOptions = { dataDir?: string; tz?: string };

/** Config from the environment, with command-line flags on top (flags win). */
export function resolveConfig(options: GlobalOptions): Config {
  const config = configFromEnvironment();
  return {
    ...config,
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    ...(options.tz ? { timeZone: options.tz } : {}),
  };
}

/**
 * Runs `work` with the app (app.ts) on an open, migrated database, and always closes it (stopping an embedded server).
 * SIGINT or SIGTERM aborts `signal`. Work that stops on it (an import commits or drops its batch)
 * gets `graceMs` to do so; past that, or at a second signal, the process closes and exits with 130.
 */
export async function withDatabase<T>(
  config: Config,
  work: (app: App, signal: AbortSignal) => Promise<T>,
  { graceMs = 0 }: { graceMs?: number } = {},
): Promise<T> {
  // Signals are ours from the start: one during the server's start-up waits for it, then closes.
  const opening = openDatabase(config);
  const abort = new AbortController();
  const exitNow = () => {
    void opening
      .then((database) => database.close())
      .catch(() => undefined)
      .finally(() => process.exit(130));
  };
  const stop = () => {
    if (abort.signal.aborted || graceMs <= 0) return exitNow();
    abort.abort();
    setTimeout(exitNow, graceMs).unref();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    const database = await opening;
    const app = createApp(config, database);
    try {
      return await work(app, abort.signal);
    } finally {
      // The migration-time backfill: a migration that came with this version may have made a new
      // index (memory's) that the history already there must fill, whichever command ran first.
      if (database.migrationsApplied) await backfillAfterMigration(app).catch(() => undefined);
      await database.close();
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    if (abort.signal.aborted) process.exitCode = 130;
  }
}

/** Starts the memory index's background run when the history holds messages it lacks. */
async function backfillAfterMigration(app: App): Promise<void> {
  const progress = await app.repositories.memory.progress();
  if (!progress.refusal && progress.indexed < progress.total) indexInBackground(app.config);
}
