import fs from "node:fs";
import path from "node:path";
import { ggufParts } from "../models/gguf-facts.ts";
import type { BaseModel } from "../models/models.repository.ts";
import type { TrainingRun } from "../training/runs.repository.ts";
import { REMOTE_HOME } from "./preflight.ts";
import { RemoteWorkerError } from "./remote.errors.ts";
import { describeSshFailure, runRemote, type SshOptions, shellQuote } from "./ssh.ts";
import type { SshTarget } from "./ssh-target.ts";

/**
 * A base without HF weights trains from its GGUF, which is on this machine only: it goes over the
 * SSH link once, into `<REMOTE_BASES>/<fingerprint>/<its file names>` (the trainer's `--bases`),
 * where the worker there finds it and checks its fingerprint. A base with hub weights is fetched by
 * the remote itself, at the commit its pull pinned.
 */
export const REMOTE_BASES = `${REMOTE_HOME}/bases`;

/** The bases of `runs` the remote needs as GGUF files: those with no HF weights (pure). */
export function basesToSend(runs: readonly TrainingRun[], models: readonly BaseModel[]): BaseModel[] {
  const ids = new Set(runs.map((run) => run.baseModelId));
  return models.filter((model) => ids.has(model.id) && !model.hfSource);
}

/** Sends each base's GGUF (every part of a split one) that the remote does not hold whole yet. */
export async function sendBases(
  target: SshTarget,
  ssh: SshOptions,
  bases: readonly BaseModel[],
  say: (line: string) => void,
): Promise<void> {
  const host = target.host;
  for (const base of bases) {
    const dir = `${REMOTE_BASES}/${base.fingerprint}`;
    for (const part of ggufParts(base.ggufPath)) {
      const { size } = await fs.promises.stat(part);
      const there = `"${dir}"/${shellQuote(path.basename(part))}`;
      const held = await runRemote(target, ssh, `stat -c %s ${there} 2>/dev/null || echo 0`);
      const failure = describeSshFailure(host, held);
      if (failure) throw new RemoteWorkerError(failure);
      if (Number(held.stdout.trim()) === size) continue;
      const megabytes = Math.round(size / 1e6);
      say(
        `${host}: sending the base ${base.name} (${path.basename(part)}, ${megabytes} MB), once: it has no HF weights to fetch there`,
      );
      const started = Date.now();
      // Written aside and renamed: a cut link leaves no file that looks whole.
      const sent = await runRemote(
        target,
        ssh,
        `mkdir -p "${dir}" && cat > ${there}.partial && mv ${there}.partial ${there}`,
        fs.createReadStream(part),
      );
      const lost = describeSshFailure(host, sent);
      if (lost) throw new RemoteWorkerError(lost);
      if (sent.code !== 0) {
        const said = sent.stderr.trim().split("\n").at(-1) ?? "";
        throw new RemoteWorkerError(
          /No space left/i.test(said)
            ? `${host}: disk full while receiving the base ${base.name} (${megabytes} MB)`
            : `${host}: sending the base ${base.name} failed (${said || `exit ${sent.code}`})`,
        );
      }
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      say(
        `${host}: sent ${base.name} in ${Math.round(seconds)} s (${(megabytes / seconds).toFixed(0)} MB/s)`,
      );
    }
  }
}
