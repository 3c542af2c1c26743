import { spawn } from "node:child_process";
import path from "node:path";
import type { TrainingConfig } from "../config/config.ts";
import { environmentForChild } from "../config/env.ts";
import { trainerDir, trainerPython } from "../training/local-worker.ts";

/** Where an evaluation's report.md and plots go unless told otherwise: the data folder, never the cwd. */
export function reportFolder(dataDir: string, evaluationId: number): string {
  return path.join(dataDir, "reports", `eval-${evaluationId}`);
}

/**
 * Runs the trainer's `report` on an evaluation: the statistics, the discriminator and the plots
 * live in Python (scipy, scikit-learn, matplotlib). The report lands in PostgreSQL, and in `out`;
 * `memoryComparison`: the figures `compare-memory` wrote, shown in the report's memory section.
 */
export async function runReport(
  training: TrainingConfig,
  databaseUrl: string,
  evaluationId: number,
  out?: string,
  memoryComparison?: string,
): Promise<void> {
  const args = ["report", "--evaluation", String(evaluationId)];
  if (out) args.push("--out", out);
  if (memoryComparison) args.push("--memory-comparison", memoryComparison);
  await runTrainerCommand(training, databaseUrl, args, "the evaluation report");
}

/**
 * Runs `python -m twin_trainer <args>` against the database; lines it prints to stderr that start
 * with `progress: ` are passed to `onProgress` (long measurements show where they are).
 */
export async function runTrainerCommand(
  training: TrainingConfig,
  databaseUrl: string,
  args: string[],
  what: string,
  onProgress?: (line: string) => void,
): Promise<void> {
  const child = spawn(trainerPython(training.python), ["-m", "twin_trainer", ...args], {
    cwd: trainerDir,
    // The connection string carries the password: the environment, never argv or logs. The bot's
    // own secrets stay behind.
    env: environmentForChild({ DATABASE_URL: databaseUrl }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  let pending = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines)
      if (line.startsWith("progress: ")) onProgress?.(line.slice("progress: ".length));
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", resolve);
  });
  if (code !== 0) {
    const reason = stderr.trim().split("\n").at(-1) ?? "";
    throw new Error(`${what} failed (exit ${code}): ${reason}`);
  }
}
