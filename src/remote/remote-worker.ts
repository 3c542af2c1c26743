import { type ChildProcess, execFile, spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { environmentForChild } from "../config/env.ts";
import type { Database } from "../db/client.ts";
import type { BaseModel } from "../models/models.repository.ts";
import { isHubRepo } from "../models/weights.ts";
import { trainerDir, trainerPython } from "../training/local-worker.ts";
import type { RunsRepository, TrainingRun } from "../training/runs.repository.ts";
import {
  describePreflight,
  type Preflight,
  parsePreflight,
  preflightScript,
  REMOTE_HOME,
} from "./preflight.ts";
import { RemoteWorkerError } from "./remote.errors.ts";
import { basesToSend, REMOTE_BASES, sendBases } from "./send-bases.ts";
import { describeSshFailure, remoteShell, runRemote, SSH_FAILED, type SshOptions, spawnSsh } from "./ssh.ts";
import type { SshTarget } from "./ssh-target.ts";
import { bundleHash, bundleStream, installScript, remoteVenvDir, torchPin } from "./trainer-bundle.ts";
import { createWorkerRole, type WorkerRole } from "./worker-role.ts";

/**
 * `twin worker remote`: trains the queued LoRA and QLoRA runs on a machine reached over SSH.
 *
 * 1. A preflight there (Python, GPUs, disk) and a check that each waiting run fits it, by the
 *    trainer's memory estimate, before anything is installed or downloaded.
 * 2. The trainer's sources go over the link into a venv under ~/.cache/twin-worker/<hash>, made
 *    once per trainer version and reused.
 * 3. A database role of its own; a reverse tunnel from the remote's loopback to this machine's
 *    PostgreSQL; the worker there claims runs as a local one does. Its secrets (the role's password,
 *    HF_TOKEN) travel on its standard input, nothing else of twin's reaches the remote.
 * 4. A dropped link puts the run back in the queue (it resumes from its last checkpoint) and
 *    reconnects with backoff; an empty queue, `--idle-exit`, `--max-hours` or Ctrl-C end it. The
 *    role is dropped, `--on-idle` runs, `--purge` removes twin's folder there.
 */

/** Methods a remote trains: full fine-tuning writes gigabytes to the model store, which stays here. */
export const REMOTE_METHODS = ["lora", "qlora"] as const;

export type RemoteWorkerOptions = {
  target: SshTarget;
  ssh: SshOptions;
  /** Minutes the remote waits on an empty queue before it stops (0: it stops at once). */
  idleExitMinutes: number;
  maxHours: number | undefined;
  /** A command of the owner's, run here once the remote is idle (e.g. their provider's CLI to stop it). */
  onIdle: string | undefined;
  /** Remove ~/.cache/twin-worker on the remote at the end (the venv, the fetched weights). */
  purge: boolean;
  /** A role made beforehand (no CREATEROLE here). */
  role: WorkerRole | undefined;
  pipOptions: string;
  hfToken: string | undefined;
  staleSeconds: number;
  /** Reconnections tried in a row after a dropped link before giving up. */
  reconnects?: number;
  /** The first wait before a reconnection (doubling, at most a minute). */
  backoffMs?: number;
};

export type RemoteWorkerDeps = {
  database: Pick<Database, "pool" | "url">;
  runs: RunsRepository;
  models: { list(): Promise<BaseModel[]> };
  /** The local trainer's Python, for the memory estimate. */
  python: string | undefined;
  say: (line: string) => void;
  /** A run's progress on the remote, as its events come. */
  onProgress?: ((run: number, step: number, steps: number) => void) | undefined;
  /** Ctrl-C: the current step finishes, the checkpoint is stored, the run goes back to the queue. */
  signal?: AbortSignal | undefined;
};

export type RemoteWorkerOutcome = {
  /** Why it ended. */
  reason: "idle" | "no-work" | "max-hours" | "stopped";
  trained: number[];
  reconnections: number;
};

type Session = {
  code: number | null;
  stderr: string[];
  workerId: string | undefined;
  claimed: number[];
  ranMs: number;
};

const REMOTE_PORT_RANGE = [20_000, 60_000] as const;
/** How long a stopping remote gets to finish its step and store a checkpoint. */
const STOP_GRACE_MS = 120_000;

export async function runRemoteWorker(
  deps: RemoteWorkerDeps,
  options: RemoteWorkerOptions,
): Promise<RemoteWorkerOutcome> {
  const { target } = options;
  const host = target.host;
  deps.say(`connecting to ${host}…`);
  const facts = await probeRemote(target, options.ssh);
  deps.say(describePreflight(host, facts));
  const flavour = facts.gpus.length > 0 ? "cuda" : "cpu";

  const waiting = await runsFor(deps, target);
  if (!(await checkRuns(deps, options, facts, waiting)) && options.idleExitMinutes === 0) {
    deps.say(`no run waits for ${host} (twin train --on ${target.runTarget}, or any): nothing to do`);
    await finish(deps, options, "no-work");
    return { reason: "no-work", trained: [], reconnections: 0 };
  }

  const hash = bundleHash({ flavour, pipOptions: options.pipOptions });
  const dir = remoteVenvDir(hash);
  if (!(await venvReady(options, dir))) await prepareVenv(deps, options, facts, dir, flavour);
  else deps.say(`${host}: the trainer's environment is ready (${hash})`);

  const role =
    options.role ??
    (await createWorkerRole(deps.database.pool, { validHours: (options.maxHours ?? 72) + 24 }));
  const made = options.role ? undefined : (role as Awaited<ReturnType<typeof createWorkerRole>>);
  if (made?.leftovers.length)
    deps.say(`dropped worker roles a crashed twin left: ${made.leftovers.join(", ")}`);
  let outcome: RemoteWorkerOutcome | undefined;
  try {
    outcome = await serve(deps, options, role, dir);
    return outcome;
  } finally {
    await made
      ?.drop()
      .catch((error: Error) => deps.say(`could not drop the worker's role ${role.name}: ${error.message}`));
    await finish(deps, options, outcome?.reason);
  }
}

/** What the remote has (Python, GPUs, disk); a machine twin cannot train on is refused saying why. */
export async function probeRemote(
  target: SshTarget,
  ssh: SshOptions,
  timeoutMs = 60_000,
): Promise<Preflight> {
  const host = target.host;
  const result = await runRemote(target, ssh, preflightScript("/nonexistent"), undefined, timeoutMs);
  const failure = describeSshFailure(host, result);
  if (failure) throw new RemoteWorkerError(failure);
  const facts = parsePreflight(result.stdout);
  if (facts.venvMissing) {
    throw new RemoteWorkerError(
      `${host}: Python ≥ 3.11 is there but cannot make a venv: install its venv module (Debian, Ubuntu: sudo apt install python3-venv)`,
    );
  }
  if (!facts.python) {
    throw new RemoteWorkerError(
      `${host}: no Python ≥ 3.11 found (python3.13, python3.12, python3.11, python3 on its PATH): the remote needs Python 3.11 or newer, and for a GPU an NVIDIA driver`,
    );
  }
  return facts;
}

/** Queued runs this remote may take, oldest first. */
async function runsFor(deps: RemoteWorkerDeps, target: SshTarget): Promise<TrainingRun[]> {
  return (await deps.runs.unfinished()).filter(
    (run) => run.status === "queued" && (run.target === "any" || run.target === target.runTarget),
  );
}

/**
 * Refuses the runs sent to this host that it cannot train (full fine-tuning, a GPU run on a machine
 * without one, a run the trainer's estimate says does not fit its GPU), before anything downloads;
 * runs for `any` that do not fit are left to other workers. True when some run remains for it.
 */
async function checkRuns(
  deps: RemoteWorkerDeps,
  options: RemoteWorkerOptions,
  facts: Preflight,
  runs: TrainingRun[],
): Promise<boolean> {
  const host = options.target.host;
  const models = await deps.models.list();
  let left = 0;
  for (const run of runs) {
    const mine = run.target === options.target.runTarget;
    const reason = await remoteRefusal(
      deps.python,
      facts,
      run,
      models.find((model) => model.id === run.baseModelId),
    );
    if (!reason) {
      left += 1;
      continue;
    }
    if (mine) {
      await deps.runs.refuse(run.id, `${host}: ${reason}`);
      deps.say(`run ${run.id} refused: ${host}: ${reason}`);
    } else deps.say(`run ${run.id} is left to other workers: ${reason}`);
  }
  return left > 0;
}

/** Why this machine cannot train the run (full fine-tuning, no GPU for a GPU run, too little GPU memory), or undefined. */
export async function remoteRefusal(
  python: string | undefined,
  facts: Preflight,
  run: TrainingRun,
  base: BaseModel | undefined,
): Promise<string | undefined> {
  if (!(REMOTE_METHODS as readonly string[]).includes(run.method)) {
    return "full fine-tuning stays on the machine of the model store (its checkpoints and model are gigabytes): train it locally, or use LoRA there";
  }
  if (base?.hfSource && !isHubRepo(base.hfSource)) {
    return `the base ${base.name} trains from weights in a folder on this machine (${base.hfSource}), which a remote cannot fetch: register their hub id (twin model pull … --weights <org>/<repo>), or train locally`;
  }
  const gpu = facts.gpus[0];
  if (!gpu)
    return run.needsGpu ? "the run needs a GPU and there is none (nvidia-smi found nothing)" : undefined;
  if (!base) return undefined;
  return memoryRefusal(python, run, base.ggufPath, gpu);
}

/** The trainer's memory estimate for the run on this GPU; its refusal, or undefined when it fits. */
function memoryRefusal(
  python: string | undefined,
  run: TrainingRun,
  base: string,
  gpu: { name: string; memoryGb: number },
): Promise<string | undefined> {
  const args = [
    "-m",
    "twin_trainer",
    "estimate",
    "--config",
    path.join(trainerDir, "configs", run.config.file),
  ];
  for (const [key, value] of Object.entries(run.config.set)) args.push("--set", `${key}=${value}`);
  args.push("--set", `base=${base}`, "--set", `gpu_memory_gb=${gpu.memoryGb}`);
  return new Promise((resolve) => {
    execFile(
      trainerPython(python),
      args,
      { cwd: trainerDir, env: environmentForChild(), timeout: 120_000 },
      (error, _stdout, stderr) => {
        if (!error) return resolve(undefined);
        const said = String(stderr)
          .trim()
          .split("\n")
          .at(-1)
          ?.replace(/^error:\s*/, "");
        resolve(`it does not fit ${gpu.name} (${gpu.memoryGb} GB): ${said || error.message}`);
      },
    );
  });
}

async function venvReady(options: RemoteWorkerOptions, dir: string): Promise<boolean> {
  const result = await runRemote(options.target, options.ssh, `test -f "${dir}/.ready"`);
  const failure = describeSshFailure(options.target.host, result);
  if (failure) throw new RemoteWorkerError(failure);
  return result.code === 0;
}

const INSTALL_PHASES: Record<string, string> = {
  venv: "creating the venv",
  torch: "installing PyTorch",
  packages: "installing transformers, peft and the rest",
  check: "checking the install",
};

async function prepareVenv(
  deps: RemoteWorkerDeps,
  options: RemoteWorkerOptions,
  facts: Preflight,
  dir: string,
  flavour: "cuda" | "cpu",
): Promise<void> {
  const host = options.target.host;
  const needGb = flavour === "cuda" ? 8 : 2;
  if (facts.diskFreeGb !== undefined && facts.diskFreeGb < needGb) {
    throw new RemoteWorkerError(
      `${host}: disk full for the trainer's environment (${facts.diskFreeGb} GB free, it needs about ${needGb} GB with ${flavour === "cuda" ? "CUDA" : "the CPU build of"} PyTorch)`,
    );
  }
  deps.say(
    `${host}: setting up the trainer (PyTorch ${flavour === "cuda" ? "with CUDA" : "for the CPU"}) in ${dir}: first time only, a few minutes…`,
  );
  const started = Date.now();
  const script = installScript({
    dir,
    python: facts.python as string,
    flavour,
    torch: torchPin(),
    pipOptions: options.pipOptions,
  });
  const result = await runRemote(options.target, options.ssh, script, bundleStream());
  for (const line of result.stdout.split("\n")) {
    const phase = /^phase=(\w+)/.exec(line)?.[1];
    if (phase && INSTALL_PHASES[phase]) deps.say(`${host}: ${INSTALL_PHASES[phase]}`);
  }
  const failure = describeSshFailure(host, result);
  if (failure) throw new RemoteWorkerError(failure);
  if (result.code !== 0) {
    const said = `${result.stdout}\n${result.stderr}`;
    const last = said
      .trim()
      .split("\n")
      .filter((line) => !/^phase=/.test(line))
      .slice(-3)
      .join(" / ");
    if (/No space left on device/i.test(said))
      throw new RemoteWorkerError(`${host}: disk full while installing the trainer (${last})`);
    if (
      /Could not find a version|No matching distribution|Failed to establish|Network is unreachable|Temporary failure in name resolution/i.test(
        said,
      )
    ) {
      throw new RemoteWorkerError(
        `${host}: pip could not get the trainer's packages (${last}); the remote needs PyPI, or a mirror in TWIN_REMOTE_PIP_OPTIONS`,
      );
    }
    throw new RemoteWorkerError(`${host}: installing the trainer failed (${last})`);
  }
  deps.say(`${host}: the trainer is set up (${Math.round((Date.now() - started) / 1000)} s)`);
}

/** The remote worker's command line (no secrets: those go on its stdin). */
export function workerCommand(
  dir: string,
  options: Pick<RemoteWorkerOptions, "target" | "idleExitMinutes" | "staleSeconds">,
): string {
  const heartbeat = Math.max(0.5, options.staleSeconds / 6);
  return remoteShell(
    `cd "${dir}/trainer" && XDG_CACHE_HOME="${REMOTE_HOME}/cache" exec "${dir}/venv/bin/python" -m twin_trainer worker --link --until-idle` +
      ` --idle-exit-seconds ${Math.round(options.idleExitMinutes * 60)} --target ${options.target.runTarget}` +
      ` --methods ${REMOTE_METHODS.join(",")} --bases "${REMOTE_BASES}" --heartbeat-seconds ${heartbeat} --stale-seconds ${options.staleSeconds}`,
  );
}

/** The remote's view of this machine's PostgreSQL: the role, through the tunnel's end there. */
export function tunnelledUrl(localUrl: string, role: WorkerRole, remotePort: number): string {
  const url = new URL(localUrl);
  url.username = encodeURIComponent(role.name);
  url.password = encodeURIComponent(role.password);
  url.hostname = "127.0.0.1";
  url.port = String(remotePort);
  url.search = "";
  return url.toString();
}

/** Sessions until the queue is done, reconnecting after a dropped link. */
async function serve(
  deps: RemoteWorkerDeps,
  options: RemoteWorkerOptions,
  role: WorkerRole,
  dir: string,
): Promise<RemoteWorkerOutcome> {
  const host = options.target.host;
  const local = new URL(deps.database.url);
  if (!local.hostname) {
    throw new RemoteWorkerError(
      "DATABASE_URL names no TCP host (a Unix socket?): the tunnel to a remote needs PostgreSQL's host and port",
    );
  }
  const trained: number[] = [];
  let reconnections = 0;
  let failuresInRow = 0;
  let stopping: RemoteWorkerOutcome["reason"] | undefined;
  let current: ChildProcess | undefined;
  const stop = (reason: RemoteWorkerOutcome["reason"]) => {
    stopping ??= reason;
    current?.stdin?.write("stop\n");
    // The step in progress ends and its checkpoint is stored first; a remote that cannot is cut off.
    const stuck = current;
    setTimeout(() => stuck?.kill(), STOP_GRACE_MS).unref();
  };
  const onAbort = () => stop("stopped");
  deps.signal?.addEventListener("abort", onAbort);
  const deadline = options.maxHours
    ? setTimeout(() => {
        deps.say(`${host}: --max-hours ${options.maxHours} reached: stopping`);
        stop("max-hours");
      }, options.maxHours * 3_600_000)
    : undefined;
  deadline?.unref();
  try {
    while (!stopping) {
      const port =
        REMOTE_PORT_RANGE[0] + Math.floor(Math.random() * (REMOTE_PORT_RANGE[1] - REMOTE_PORT_RANGE[0]));
      const forward = `127.0.0.1:${port}:${local.hostname}:${local.port || "5432"}`;
      const waiting = await runsFor(deps, options.target);
      await sendBases(options.target, options.ssh, basesToSend(waiting, await deps.models.list()), deps.say);
      const child = spawnSsh(options.target, options.ssh, workerCommand(dir, options), [
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        forward,
      ]);
      current = child;
      if (stopping) child.stdin?.write("stop\n");
      const session = await followSession(deps, child, {
        database_url: tunnelledUrl(deps.database.url, role, port),
        hf_token: options.hfToken ?? null,
      });
      current = undefined;
      for (const run of session.claimed) if (!trained.includes(run)) trained.push(run);
      if (session.code === 0) return { reason: stopping ?? "idle", trained, reconnections };
      const said = session.stderr.join("\n");
      if (/remote port forwarding failed/i.test(said)) continue; // the port is taken there: another one
      const failure = describeSshFailure(host, { code: session.code, stderr: said });
      // Lost: the worker saw its link end, or ssh failed once the worker ran (or said the link went).
      const lost =
        session.code === LINK_LOST_EXIT ||
        (session.code === SSH_FAILED && (session.workerId !== undefined || /was lost/.test(failure ?? "")));
      if (!lost) {
        await requeue(deps, session);
        throw new RemoteWorkerError(
          failure ??
            `${host}: the worker exited with ${session.code}: ${session.stderr.slice(-5).join(" / ")}`,
        );
      }
      const requeued = await requeue(deps, session);
      failuresInRow = session.ranMs > 60_000 ? 1 : failuresInRow + 1;
      if (failuresInRow > (options.reconnects ?? 8)) {
        throw new RemoteWorkerError(
          `${host}: the link dropped ${failuresInRow} times in a row; giving up (${failure ?? "no reason"})`,
        );
      }
      const wait = Math.min(60_000, (options.backoffMs ?? 2_000) * 2 ** (failuresInRow - 1));
      deps.say(
        `${host}: the link was lost${requeued.length ? `; run ${requeued.join(", ")} went back to the queue and resumes from its last checkpoint` : ""}; reconnecting in ${Math.round(wait / 1000)} s`,
      );
      reconnections += 1;
      await sleep(wait, deps.signal);
    }
    return { reason: stopping, trained, reconnections };
  } finally {
    if (deadline) clearTimeout(deadline);
    deps.signal?.removeEventListener("abort", onAbort);
  }
}

/** The trainer's exit when its link ends (trainer/twin_trainer/link.py). */
const LINK_LOST_EXIT = 75;

/** Runs this session's worker held, back to the queue (it cannot store anything any more). */
async function requeue(deps: RemoteWorkerDeps, session: Session): Promise<number[]> {
  if (!session.workerId) return [];
  // The worker's id is host:pid:suffix; requeueRunsOf matches "<prefix>:…".
  const prefix = session.workerId.split(":").slice(0, -1).join(":");
  return deps.runs.requeueRunsOf(prefix);
}

/** Sends the secrets, relays the worker's events as progress, and waits for the session's end. */
function followSession(
  deps: RemoteWorkerDeps,
  child: ChildProcess,
  secrets: { database_url: string; hf_token: string | null },
): Promise<Session> {
  const started = Date.now();
  const session: Session = { code: null, stderr: [], workerId: undefined, claimed: [], ranMs: 0 };
  child.stdin?.on("error", () => {}); // a dead link: the exit says so
  child.stdin?.write(`${JSON.stringify(secrets)}\n`);
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    describeEvent(deps, session, event);
  });
  readline.createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
    session.stderr.push(line);
    if (session.stderr.length > 40) session.stderr.shift();
  });
  return new Promise((resolve) => {
    child.on("error", (error) => {
      session.stderr.push(`could not start ssh: ${error.message}`);
      resolve({ ...session, code: null, ranMs: Date.now() - started });
    });
    child.on("close", (code) => resolve({ ...session, code, ranMs: Date.now() - started }));
  });
}

function describeEvent(deps: RemoteWorkerDeps, session: Session, event: Record<string, unknown>): void {
  const run = Number(event.run);
  switch (event.event) {
    case "worker": {
      session.workerId = String(event.worker);
      break;
    }
    case "claimed": {
      session.claimed.push(run);
      deps.say(`run ${run}: claimed (attempt ${event.attempt})`);
      break;
    }
    case "phase": {
      deps.say(`run ${run}: ${String(event.phase)}`);
      break;
    }
    case "start": {
      const from = Number(event.resumed_from ?? 0);
      deps.say(`run ${run}: training ${event.steps} steps${from ? `, resumed from step ${from}` : ""}`);
      deps.onProgress?.(run, from, Number(event.steps));
      break;
    }
    case "log": {
      deps.onProgress?.(run, Number(event.step), Number(event.max_steps));
      break;
    }
    case "published": {
      deps.say(`run ${run}: done; its adapter is active`);
      break;
    }
    case "failed": {
      deps.say(`run ${run}: failed: ${String(event.reason ?? "")}`);
      break;
    }
    case "requeued": {
      deps.say(`run ${run}: back in the queue (its worker went silent)`);
      break;
    }
  }
}

/** The end: --on-idle when the remote went idle or ran out of hours, --purge. */
async function finish(
  deps: RemoteWorkerDeps,
  options: RemoteWorkerOptions,
  reason: RemoteWorkerOutcome["reason"] | undefined,
): Promise<void> {
  const host = options.target.host;
  if (options.purge) {
    const result = await runRemote(options.target, options.ssh, `rm -rf "${REMOTE_HOME}"`).catch(
      () => undefined,
    );
    deps.say(
      result?.code === 0 ? `${host}: removed ${REMOTE_HOME}` : `${host}: could not remove ${REMOTE_HOME}`,
    );
  }
  if (options.onIdle && (reason === "idle" || reason === "no-work" || reason === "max-hours")) {
    deps.say(`running --on-idle: ${options.onIdle}`);
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn("sh", ["-c", options.onIdle as string], {
        env: environmentForChild(),
        stdio: "inherit",
      });
      child.on("error", () => resolve(null));
      child.on("close", resolve);
    });
    deps.say(
      code === 0
        ? "--on-idle done"
        : `--on-idle exited with ${code}: check the machine is stopped (it bills until it is)`,
    );
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
