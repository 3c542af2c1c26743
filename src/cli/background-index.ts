import { spawn } from "node:child_process";
import createDebug from "debug";
import type { Config } from "../config/config.ts";

const debug = createDebug("twin:cli:memory");

/**
 * Starts `twin memory index --background` as a detached process that outlives this one, so new
 * messages reach the memory index without the import waiting for it (its time and exit stay its
 * own). The child is a twin process like any other: on the embedded server it joins, and keeps the
 * server up until it ends. TWIN_MEMORY_INDEX=off leaves it out (the next import, `twin memory
 * index` or the bot's start indexes instead).
 */
export function indexInBackground(config: Config): void {
  if (!config.memory.indexAfterImport) return;
  const script = process.argv[1];
  if (!script) return;
  try {
    const child = spawn(
      process.execPath,
      // The same entry point and Node flags as this process; the data folder as this command
      // resolved it (a --data-dir flag is not in the environment).
      [...process.execArgv, script, "--data-dir", config.dataDir, "memory", "index", "--background"],
      { detached: true, stdio: "ignore", env: process.env },
    );
    child.on("error", (error) => debug("cannot start the background indexer: %s", error.message));
    child.unref();
    debug("indexing in the background (process %d)", child.pid);
  } catch (error) {
    // The import itself succeeded; the index catches up with the next run.
    debug("cannot start the background indexer: %s", (error as Error).message);
  }
}
