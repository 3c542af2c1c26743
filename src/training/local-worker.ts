import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import type { TrainingConfig } from "../config/config.ts";
import { environmentForChild } from "../config/env.ts";
import type { RunsRepository } from "./runs.repository.ts";
import { TrainerSetupError } from "./training.errors.ts";

export const trainerDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../trainer");

/** The trainer environment's Python: configured, else trainer/.venv (made by scripts/setup-trainer.sh). */
export function trainerPython(configured: string | undefined): string {
  const python = configured ?? path.join(trainerDir, ".venv/bin/python");
  if (!fs.existsSync(python)) {
    throw new TrainerSetupError(
      `the trainer's Python environment is missing (${python}): run \`bash scripts/setup-trainer.sh\`, or set TWIN_TRAINER_PYTHON`,
    );
  }
  return python;
}

/** Whether this process should start a worker for queued runs (pure). */
export function wantsLocalWorker(mode: TrainingConfig["worker"], liveExternalWorkers: number): boolean {
  if (mode === "local") return true;
  if (mode === "external") return false;
  return liveExternalWorkers === 0;
}

/**
 * The worker as a child process of the app, for the embedded default: started when there is
 * work, it exits once the queue is empty (`--until-idle`). Its lines go to `onLine`: on stdout its
 * JSON events, on stderr what it prints between runs (what a run prints, library warnings and
 * tracebacks, the worker stores as the run's log: trainer/twin_trainer/output.py).
 * `stop()` sends SIGTERM: the run saves a checkpoint and goes back to the queue.
 */
export class LocalWorker {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: {
      config: TrainingConfig;
      databaseUrl: string;
      runs: RunsRepository;
      /** The owner said this machine has a CUDA GPU (TWIN_GPU=cuda): runs that need one are its too. */
      hasGpu?: boolean | undefined;
      onLine?: ((line: string) => void) | undefined;
      onExit?: ((code: number | null, signal: NodeJS.Signals | null) => void) | undefined;
    },
  ) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts a worker if runs wait and none of ours or (in auto mode) anyone else's is alive. */
  async kick(): Promise<boolean> {
    const { config, runs } = this.options;
    if (this.child || config.worker === "external") return false;
    const hasGpu = this.options.hasGpu ?? false;
    if (!(await runs.hasWork(config.staleSeconds, { target: "local", hasGpu }))) return false;
    const others = config.worker === "auto" ? (await runs.liveWorkers(config.staleSeconds)).length : 0;
    if (!wantsLocalWorker(config.worker, others)) return false;
    this.start();
    return true;
  }

  /** The worker's process id while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts a worker now (`kick` starts one only when runs wait). */
  start(): void {
    if (this.child) return;
    const { config } = this.options;
    const heartbeat = Math.max(0.5, config.staleSeconds / 6);
    const child = spawn(
      trainerPython(config.python),
      [
        "-m",
        "twin_trainer",
        "worker",
        "--until-idle",
        "--heartbeat-seconds",
        String(heartbeat),
        "--stale-seconds",
        String(config.staleSeconds),
      ],
      {
        cwd: trainerDir,
        // The connection string carries the password: it goes in the environment, never argv or logs.
        // The bot's own secrets (token, session key, API hash) stay behind.
        env: environmentForChild({
          DATABASE_URL: this.options.databaseUrl,
          TWIN_MODEL_STORE: config.modelStore,
        }),
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    this.child = child;
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on("line", (line) => this.options.onLine?.(line));
    }
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.child = undefined;
        this.options.onExit?.(code, signal);
        resolve();
      });
      child.on("error", (error) => {
        this.child = undefined;
        this.options.onLine?.(`the trainer worker could not start: ${error.message}`);
        this.options.onExit?.(null, null); // neither a code nor a signal: it never ran
        resolve();
      });
    });
  }

  /**
   * Stops the worker within `graceMs`: SIGTERM first (it re-queues its run, with a checkpoint when
   * it can save one in time), then SIGKILL, after which its run goes back to the queue from here
   * and resumes from its last stored checkpoint. A container's stop grace is often 10 s in all.
   */
  async stop(graceMs = 3_000): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    child.kill("SIGTERM");
    const stopped = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), graceMs).unref()),
    ]);
    if (stopped) return;
    child.kill("SIGKILL");
    await this.exited;
    await this.options.runs.requeueRunsOf(`${os.hostname()}:${child.pid}`);
  }
}
