import type { Preflight } from "./preflight.ts";
import { RemoteWorkerError } from "./remote.errors.ts";
import {
  probeRemote,
  type RemoteWorkerDeps,
  type RemoteWorkerOptions,
  runRemoteWorker,
} from "./remote-worker.ts";
import { parseSshTarget, type SshTarget } from "./ssh-target.ts";

/**
 * The machines the bot may train on (TWIN_REMOTE_WORKERS): each probed when /train plans, and a
 * `twin worker remote` session started in the bot's process when the owner picks it (one per
 * machine at a time). The bot's stop stops them in order: each run goes back to the queue with a
 * checkpoint.
 */
export class RemoteWorkers {
  readonly targets: SshTarget[];
  private readonly sessions = new Map<string, { abort: AbortController; done: Promise<void> }>();

  constructor(
    addresses: readonly string[],
    private readonly deps: Omit<RemoteWorkerDeps, "signal" | "onProgress">,
    private readonly options: Omit<RemoteWorkerOptions, "target">,
  ) {
    this.targets = addresses.map(parseSshTarget);
  }

  /** The machine's preflight, or why it cannot be reached or used (within 20 s: /train waits for it). */
  async probe(target: SshTarget): Promise<Preflight | RemoteWorkerError> {
    return probeRemote(target, this.options.ssh, 20_000).catch((error: unknown) =>
      error instanceof RemoteWorkerError ? error : new RemoteWorkerError(String(error)),
    );
  }

  running(target: SshTarget): boolean {
    return this.sessions.has(target.host);
  }

  /**
   * Starts the machine's worker unless one runs there; it ends on its own when the queue is empty.
   * `notify` hears a failure that ends it (the owner should know the queued run waits).
   */
  start(target: SshTarget, notify?: (message: string) => unknown): void {
    if (this.sessions.has(target.host)) return;
    const abort = new AbortController();
    const say = (line: string) => this.deps.say(`${target.host}: ${line.replace(`${target.host}: `, "")}`);
    const done = runRemoteWorker({ ...this.deps, say, signal: abort.signal }, { ...this.options, target })
      .then((outcome) =>
        say(`worker ended (${outcome.reason}); trained ${outcome.trained.join(", ") || "nothing"}`),
      )
      .catch((error: Error) => {
        say(`worker failed: ${error.message}`);
        void Promise.resolve(notify?.(`the worker there stopped: ${error.message}`)).catch(() => undefined);
      })
      .finally(() => this.sessions.delete(target.host));
    this.sessions.set(target.host, { abort, done });
  }

  /** Stops every session: the remote finishes its step, stores a checkpoint, the run is re-queued. */
  async stop(): Promise<void> {
    const sessions = [...this.sessions.values()];
    for (const session of sessions) session.abort.abort();
    await Promise.all(sessions.map((session) => session.done));
  }
}
