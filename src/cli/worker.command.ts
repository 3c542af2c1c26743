import fs from "node:fs/promises";
import type { Command } from "commander";
import { huggingFaceFromEnvironment } from "../config/env.ts";
import { RemoteWorkerError } from "../remote/remote.errors.ts";
import { runRemoteWorker } from "../remote/remote-worker.ts";
import { parseSshTarget } from "../remote/ssh-target.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { integer, positiveNumber } from "./options.ts";
import { type Progress, progressBar } from "./progress.ts";

type RemoteOptions = {
  identity?: string;
  idleExit: number;
  maxHours?: number;
  onIdle?: string;
  purge?: boolean;
  role?: string;
  rolePasswordFile?: string;
};

/** The role's password from a file only its owner can read (never an argument: `ps` shows those). */
async function readRolePassword(file: string): Promise<string> {
  const stat = await fs.stat(file).catch(() => undefined);
  if (!stat) throw new RemoteWorkerError(`--role-password-file ${file}: no such file`);
  if (stat.mode & 0o077) {
    throw new RemoteWorkerError(`--role-password-file ${file} is readable by others: chmod 600 it first`);
  }
  const password = (await fs.readFile(file, "utf8")).trim();
  if (!password) throw new RemoteWorkerError(`--role-password-file ${file} is empty`);
  return password;
}

export function registerWorkerCommand(program: Command): void {
  const worker = program.command("worker").description("training workers beside the bot's own");
  worker
    .command("remote <address>")
    .description(
      "train the queued LoRA and QLoRA runs on a machine reached over SSH (ssh://user@host[:port]), then leave it as it was",
    )
    .option("--identity <file>", "the SSH private key (default: your agent and ssh config)")
    .option(
      "--idle-exit <minutes>",
      "wait this long on an empty queue before stopping (default 0: stop when the queue is empty)",
      integer("--idle-exit", 0),
      0,
    )
    .option("--max-hours <hours>", "stop everything after this many hours", positiveNumber("--max-hours"))
    .option(
      "--on-idle <command>",
      "a command to run here once the remote is idle, e.g. your provider's CLI to stop the machine",
    )
    .option("--purge", "remove twin's folder there at the end (the trainer's venv, fetched weights)")
    .option("--role <name>", "a database role made beforehand, when twin may not create one (no CREATEROLE)")
    .option("--role-password-file <file>", "that role's password, alone in a file only you can read")
    .action(async (address: string, options: RemoteOptions, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const target = parseSshTarget(address);
      if (options.role && !options.rolePasswordFile) {
        throw new RemoteWorkerError(
          "--role needs --role-password-file (the role's password, in a 0600 file)",
        );
      }
      const role = options.role
        ? { name: options.role, password: await readRolePassword(options.rolePasswordFile as string) }
        : undefined;
      let bar: { run: number; progress: Progress } | undefined;
      const say = (line: string) => {
        bar?.progress.stop();
        bar = undefined;
        process.stdout.write(`${line}\n`);
      };
      const outcome = await withDatabase(
        config,
        ({ database, repositories }, signal) =>
          runRemoteWorker(
            {
              database,
              runs: repositories.runs,
              models: repositories.models,
              python: config.training.python,
              say,
              signal,
              onProgress: (run, step, steps) => {
                if (bar?.run !== run) {
                  bar?.progress.stop();
                  bar = {
                    run,
                    progress: progressBar({
                      format: `run ${run} on ${target.host} |{bar}| step {value}/{total}`,
                    }),
                  };
                  bar.progress.start(steps, step);
                } else bar.progress.update(step);
              },
            },
            {
              target,
              ssh: { configFile: config.training.remote.sshConfig, identity: options.identity },
              idleExitMinutes: options.idleExit,
              maxHours: options.maxHours,
              onIdle: options.onIdle,
              purge: options.purge ?? false,
              role,
              pipOptions: config.training.remote.pipOptions,
              hfToken: huggingFaceFromEnvironment().token,
              staleSeconds: config.training.staleSeconds,
            },
          ),
        // Ctrl-C: the remote finishes its step and stores a checkpoint first.
        { graceMs: 150_000 },
      );
      bar?.progress.stop();
      const runs = outcome.trained.length ? `; trained run ${outcome.trained.join(", ")}` : "";
      const why = {
        idle: "the queue is empty",
        "no-work": "nothing to do",
        "max-hours": "--max-hours reached",
        stopped: "stopped",
      }[outcome.reason];
      process.stdout.write(
        `${target.host}: done (${why})${runs}${outcome.reconnections ? `; reconnected ${outcome.reconnections === 1 ? "once" : `${outcome.reconnections} times`}` : ""}\n`,
      );
    });
}
