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
 * live in Python (scipy, scikit-learn, matplotlib). The report lands in PostgreSQL, and in `out`.
 */
export async function runReport(
  training: TrainingConfig,
  databaseUrl: string,
  evaluationId: number,
  out?: string,
): Promise<void> {
  const args = ["-m", "twin_trainer", "report", "--evaluation", String(evaluationId)];
  if (out) args.push("--out", out);
  const child = spawn(trainerPython(training.python), args, {
    cwd: trainerDir,
    // The connection string carries the password: the environment, never argv or logs. The bot's
    // own secrets stay behind.
    env: environmentForChild({ DATABASE_URL: databaseUrl }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", resolve);
  });
  if (code !== 0) {
    const reason = stderr.trim().split("\n").at(-1) ?? "";
    throw new Error(`the evaluation report failed (exit ${code}): ${reason}`);
  }
}
