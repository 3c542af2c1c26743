import { RemoteWorkerError } from "./remote.errors.ts";

/** A machine reached over SSH, as `ssh://[user@]host[:port]` names it. */
export type SshTarget = {
  user: string | undefined;
  host: string;
  port: number | undefined;
  /** `ssh`'s destination argument: `user@host`, or the host (an alias in the user's ssh config). */
  destination: string;
  /** The run target this machine's worker takes: `remote:<host>`. */
  runTarget: `remote:${string}`;
};

/** `ssh://user@host[:port]` as an SSH target (pure); a bad one is refused saying the form. */
export function parseSshTarget(text: string): SshTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RemoteWorkerError(
      `“${text}” is not an ssh:// address: write ssh://user@host or ssh://user@host:port`,
    );
  }
  if (url.protocol !== "ssh:" || !url.hostname) {
    throw new RemoteWorkerError(
      `“${text}” is not an ssh:// address: write ssh://user@host or ssh://user@host:port`,
    );
  }
  if (url.password) {
    throw new RemoteWorkerError(
      "an ssh:// address with a password is refused: use a key (--identity, or your ssh agent)",
    );
  }
  if ((url.pathname && url.pathname !== "/") || url.search || url.hash) {
    throw new RemoteWorkerError(`“${text}”: an ssh:// address names a machine only, no path`);
  }
  const user = url.username ? decodeURIComponent(url.username) : undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return {
    user,
    host,
    port: url.port ? Number(url.port) : undefined,
    destination: user ? `${user}@${host}` : host,
    runTarget: `remote:${host}`,
  };
}
