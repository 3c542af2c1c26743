import { type ChildProcess, spawn } from "node:child_process";
import { environmentForSsh } from "../config/env.ts";
import { RemoteWorkerError } from "./remote.errors.ts";
import type { SshTarget } from "./ssh-target.ts";

/** How `ssh` is called: the user's own client, agent, config and known_hosts, plus what twin adds. */
export type SshOptions = {
  /** `-F`: an ssh config file instead of ~/.ssh/config (TWIN_SSH_CONFIG). */
  configFile?: string | undefined;
  /** `-i`: a private key (its passphrase, if any, comes from the agent). */
  identity?: string | undefined;
};

/**
 * `ssh`'s arguments up to and including the destination (pure). Host keys stay OpenSSH's to check
 * (never `StrictHostKeyChecking=no`); BatchMode makes a prompt a failure instead of a hang; the
 * keep-alives notice a dead link within ~15 s.
 */
export function sshArgs(target: SshTarget, options: SshOptions, extra: string[] = []): string[] {
  return [
    ...(options.configFile ? ["-F", options.configFile] : []),
    ...(options.identity ? ["-i", options.identity] : []),
    ...(target.port ? ["-p", String(target.port)] : []),
    "-T",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=20",
    "-o",
    "ServerAliveInterval=5",
    "-o",
    "ServerAliveCountMax=3",
    ...extra,
    "--",
    target.destination,
  ];
}

/** A POSIX shell word: the remote runs `sh -c <word>`, whatever the login shell does with it. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'"'"'`)}'`;
}

/** The remote command line that runs `script` with `sh` (pure). */
export function remoteShell(script: string): string {
  return `sh -c ${shellQuote(script)}`;
}

/**
 * Starts `ssh` (stdio piped) with an environment of OpenSSH's own variables only, in a process
 * group of its own: Ctrl-C in the terminal reaches twin, which stops the remote in order (its
 * checkpoint stored), not ssh, which would cut the link at once.
 */
export function spawnSsh(
  target: SshTarget,
  options: SshOptions,
  command: string,
  extra: string[] = [],
): ChildProcess {
  return spawn("ssh", [...sshArgs(target, options, extra), command], {
    env: environmentForSsh(),
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });
}

export type SshResult = { code: number | null; stdout: string; stderr: string };

/** Runs `script` on the remote with `sh`, feeding `input` (a string, or a readable stream) to it. */
export function runRemote(
  target: SshTarget,
  options: SshOptions,
  script: string,
  input?: string | NodeJS.ReadableStream,
  timeoutMs?: number,
): Promise<SshResult> {
  const child = spawnSsh(target, options, remoteShell(script));
  const timer = timeoutMs
    ? setTimeout(() => {
        stderr += `\ntimed out after ${Math.round(timeoutMs / 1000)} s`;
        child.kill("SIGKILL");
      }, timeoutMs)
    : undefined;
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.stdin?.on("error", () => {}); // the remote may stop reading early; its exit code says why
  if (typeof input === "string" || input === undefined) child.stdin?.end(input ?? "");
  else input.pipe(child.stdin as NodeJS.WritableStream);
  return new Promise((resolve, reject) => {
    child.on("error", (error) =>
      reject(
        new RemoteWorkerError(
          `could not start ssh (${error.message}): install the OpenSSH client (Debian: openssh-client)`,
        ),
      ),
    );
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? SSH_FAILED, stdout, stderr });
    });
  });
}

/** ssh exits 255 for its own failures (connection, authentication, host key, forwarding). */
export const SSH_FAILED = 255;

/**
 * What went wrong in words, from ssh's exit and what it printed (pure); undefined when ssh itself
 * worked and the remote command failed.
 */
export function describeSshFailure(
  host: string,
  result: Pick<SshResult, "code" | "stderr">,
): string | undefined {
  if (result.code !== SSH_FAILED) return undefined;
  const said = result.stderr;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/i.test(said)) {
    return /HAS CHANGED/i.test(said)
      ? `${host}'s host key has changed since you last connected: if the machine was rebuilt, remove its old key (ssh-keygen -R ${host}); otherwise someone may be in the middle — twin does not connect`
      : `${host}'s host key is not known: connect once with \`ssh ${host}\` and check its fingerprint, then try again`;
  }
  if (/Permission denied|Too many authentication failures/i.test(said)) {
    return `${host} refused the login (authentication failed): check the user, and the key (--identity, or ssh-add)`;
  }
  if (/remote port forwarding failed/i.test(said))
    return `${host} refused the database tunnel (remote port forwarding failed)`;
  if (/Could not resolve hostname/i.test(said)) return `${host}: no such host (the name does not resolve)`;
  if (/Connection refused/i.test(said))
    return `${host} refused the connection: is sshd running, and the port right?`;
  if (/timed out|Connection closed|Broken pipe|Connection reset|Timeout, server/i.test(said)) {
    return `the SSH link to ${host} was lost (${lastLine(said)})`;
  }
  return `ssh to ${host} failed: ${lastLine(said) || "no reason given"}`;
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split("\n")
      .filter((line) => !/^(Warning: Permanently added|@@@)/.test(line))
      .at(-1) ?? ""
  ).trim();
}
