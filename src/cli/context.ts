import type { Config } from "../config/config.ts";
import { configFromEnvironment } from "../config/env.ts";
import { type Database, openDatabase } from "../db/client.ts";

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

/** Runs `work` with an open, migrated database and always closes it (stopping an embedded server). */
export async function withDatabase<T>(config: Config, work: (database: Database) => Promise<T>): Promise<T> {
  const database = await openDatabase(config);
  const stop = () => {
    void database.close().finally(() => process.exit(130));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    return await work(database);
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await database.close();
  }
}
