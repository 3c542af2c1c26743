import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The unix users the remote logs in as (created by scripts/setup-ssh-remote.sh). */
const REMOTE_USERS = ["twinremote", "twinnopython"] as const;
/** sshd's port inside its own network namespace, where nothing else listens. */
const SSHD_PORT = 22;

export type SshAlias = "remote" | "remote-nopython" | "remote-changed-key" | "remote-wrong-identity";

/**
 * A real OpenSSH server standing for a rented GPU box, for end-to-end tests: it runs in its own
 * network namespace with loopback only, so the host's services (PostgreSQL on 127.0.0.1:5432) are
 * out of its reach except through a tunnel the client opens. The system `ssh` reaches it with
 * `ssh -F configFile <alias>`, through a ProxyCommand that enters the namespace.
 *
 * Aliases: `remote` (user twinremote), `remote-nopython` (user twinnopython, whose sessions find
 * no python3 on PATH), `remote-changed-key` (known_hosts holds another key: ssh refuses with
 * "REMOTE HOST IDENTIFICATION HAS CHANGED"), `remote-wrong-identity` (a key the server does not
 * accept: "Permission denied").
 */
export type SshRemote = {
  /** ssh_config file for `ssh -F`, defining the aliases above (BatchMode, strict host key checking). */
  configFile: string;
  /** `ssh://twinremote@remote` and friends. */
  url: (alias?: SshAlias) => string;
  /** Live processes of the remote users inside the namespace, with their full command lines. */
  processes: () => RemoteProcess[];
  /** The environment of a process, one `NAME=value` entry each. */
  environ: (pid: number) => string[];
  /**
   * Drops every live SSH connection abruptly, as a network failure would: the client's proxy and
   * the sshd processes serving the connections die; the session's processes lose their stdin.
   */
  dropConnections: () => Promise<void>;
  /** Whether a TCP connect from inside the namespace to host:port succeeds. */
  reachableFromRemote: (host: string, port: number) => Promise<boolean>;
  /** Kills everything in the namespace (the remote users' processes, sshd) and removes the files. */
  stop: () => Promise<void>;
};

export type RemoteProcess = { pid: number; user: string; command: string };

const ALIAS_USER: Record<SshAlias, (typeof REMOTE_USERS)[number]> = {
  remote: "twinremote",
  "remote-nopython": "twinnopython",
  "remote-changed-key": "twinremote",
  "remote-wrong-identity": "twinremote",
};

/**
 * Why this machine cannot stand in for a remote, or undefined when it can: the tests need root (to
 * run sshd as other users), OpenSSH's server (scripts/setup-ssh-remote.sh installs it) and network
 * namespaces (a container without CAP_SYS_ADMIN has none). Asked once per test file.
 */
export function sshRemoteUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the stand-in remote needs root (sshd runs sessions as other users)";
  const setup = spawnSync("bash", [path.join(repoRoot, "scripts/setup-ssh-remote.sh")], { encoding: "utf8" });
  if (setup.status !== 0)
    return `scripts/setup-ssh-remote.sh failed: ${setup.stderr.trim().split("\n").at(-1)}`;
  const namespace = spawnSync("unshare", ["--net", "true"], { encoding: "utf8" });
  if (namespace.status !== 0) return `no network namespace here (unshare --net: ${namespace.stderr.trim()})`;
  return undefined;
}

export async function startSshRemote(): Promise<SshRemote> {
  await run("bash", [path.join(repoRoot, "scripts/setup-ssh-remote.sh")]);
  const uids = new Map<number, string>();
  for (const user of REMOTE_USERS) {
    const { stdout } = await run("id", ["-u", user]);
    uids.set(Number(stdout.trim()), user);
  }

  // The remote users read the authorized keys and the no-python PATH from here: 0755.
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "twin-ssh-remote-"));
  await fsp.chmod(dir, 0o755);
  const file = (name: string) => path.join(dir, name);
  await Promise.all([
    keygen(file("host_key")),
    keygen(file("client_key")),
    keygen(file("wrong_key")),
    keygen(file("other_host_key")),
  ]);
  await fsp.mkdir(file("authorized_keys"), { mode: 0o755 });
  const clientKey = await fsp.readFile(file("client_key.pub"), "utf8");
  for (const user of REMOTE_USERS)
    await fsp.writeFile(path.join(file("authorized_keys"), user), clientKey, { mode: 0o644 });
  const noPythonPath = pathWithoutPython(file("nopython-bin"));

  await fsp.writeFile(
    file("sshd_config"),
    [
      `Port ${SSHD_PORT}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${file("host_key")}`,
      `PidFile ${file("sshd.pid")}`,
      `AuthorizedKeysFile ${file("authorized_keys")}/%u`,
      // The keys sit under /tmp (world-writable), which StrictModes rejects.
      "StrictModes no",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PermitRootLogin no",
      `AllowUsers ${REMOTE_USERS.join(" ")}`,
      "AllowTcpForwarding yes",
      "GatewayPorts no",
      "X11Forwarding no",
      "PrintMotd no",
      "PrintLastLog no",
      "Subsystem sftp internal-sftp",
      "Match User twinnopython",
      `  SetEnv PATH=${noPythonPath}`,
      "",
    ].join("\n"),
  );

  // `unshare` without --fork execs, so this child's pid ends up being sshd, inside the namespace.
  const sshd = spawn(
    "unshare",
    ["--net", "sh", "-c", `ip link set lo up && exec /usr/sbin/sshd -D -e -f ${file("sshd_config")}`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const log: string[] = [];
  const sshdPid = sshd.pid;
  try {
    if (sshdPid === undefined) throw new Error("could not spawn unshare");
    await listening(sshd, log);
  } catch (error) {
    sshd.kill("SIGKILL");
    await fsp.rm(dir, { recursive: true, force: true });
    throw error;
  }
  const netns = fs.readlinkSync(`/proc/${sshdPid}/ns/net`);
  // A test file that ends without stop() must not leave sshd or its files behind.
  const killOnExit = () => {
    sshd.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);
  const enter = ["nsenter", `--net=/proc/${sshdPid}/ns/net`, "--"];

  const knownHost = async (alias: string, key: string) =>
    `${alias} ${(await fsp.readFile(file(`${key}.pub`), "utf8")).split(" ").slice(0, 2).join(" ")}\n`;
  await fsp.writeFile(
    file("known_hosts"),
    (await knownHost("twin-ssh-remote", "host_key")) +
      (await knownHost("twin-ssh-remote-changed-key", "other_host_key")),
  );
  const hostBlock = (alias: SshAlias, identity: string, hostKeyAlias: string) => [
    `Host ${alias}`,
    `  User ${ALIAS_USER[alias]}`,
    `  IdentityFile ${file(identity)}`,
    `  HostKeyAlias ${hostKeyAlias}`,
  ];
  const configFile = file("ssh_config");
  await fsp.writeFile(
    configFile,
    [
      ...hostBlock("remote", "client_key", "twin-ssh-remote"),
      ...hostBlock("remote-nopython", "client_key", "twin-ssh-remote"),
      ...hostBlock("remote-changed-key", "client_key", "twin-ssh-remote-changed-key"),
      ...hostBlock("remote-wrong-identity", "wrong_key", "twin-ssh-remote"),
      `Host ${Object.keys(ALIAS_USER).join(" ")}`,
      "  HostName 127.0.0.1",
      `  Port ${SSHD_PORT}`,
      `  ProxyCommand ${enter.join(" ")} socat STDIO TCP:127.0.0.1:${SSHD_PORT}`,
      `  UserKnownHostsFile ${file("known_hosts")}`,
      "  GlobalKnownHostsFile /dev/null",
      "  StrictHostKeyChecking yes",
      "  UpdateHostKeys no",
      "  BatchMode yes",
      "  IdentitiesOnly yes",
      "  PasswordAuthentication no",
      "  KbdInteractiveAuthentication no",
      "  ConnectTimeout 10",
      "",
    ].join("\n"),
  );

  const inNamespace = (pid: number) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/net`) === netns;
    } catch {
      return false; // gone meanwhile
    }
  };
  const processes = (): RemoteProcess[] =>
    livePids()
      .filter((pid) => inNamespace(pid) && isAlive(pid))
      .flatMap((pid) => {
        const user = uids.get(ownerUid(pid) ?? -1);
        const command = commandLine(pid);
        return user && command !== undefined ? [{ pid, user, command }] : [];
      });

  const dropConnections = async () => {
    // The client's proxies (socat, run by ssh outside the namespace's process tree but inside it)
    // and every sshd below the listener: both ends of each connection vanish at once.
    const victims = livePids().filter(
      (pid) =>
        pid !== sshdPid &&
        inNamespace(pid) &&
        ((processName(pid) === "socat" && commandLine(pid)?.includes(`TCP:127.0.0.1:${SSHD_PORT}`)) ||
          (processName(pid) === "sshd" && descendsFrom(pid, sshdPid))),
    );
    await killAndWait(victims);
  };

  const reachableFromRemote = async (host: string, port: number) => {
    try {
      await run(enter[0] as string, [
        ...enter.slice(1),
        "socat",
        "-u",
        "OPEN:/dev/null",
        `TCP:${host}:${port},connect-timeout=3`,
      ]);
      return true;
    } catch {
      return false;
    }
  };

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await killAndWait(livePids().filter((pid) => pid !== sshdPid && inNamespace(pid)));
      if (sshd.exitCode === null && sshd.signalCode === null) {
        const exited = new Promise((resolve) => sshd.once("exit", resolve));
        sshd.kill("SIGTERM");
        await exited;
      }
      // Anything that slipped in while sshd was still accepting.
      await killAndWait(livePids().filter(inNamespace));
      await fsp.rm(dir, { recursive: true, force: true });
      process.off("exit", killOnExit);
    })();
    return stopped;
  };

  return {
    configFile,
    url: (alias = "remote") => `ssh://${ALIAS_USER[alias]}@${alias}`,
    processes,
    environ: (pid) =>
      fs
        .readFileSync(`/proc/${pid}/environ`, "utf8")
        .split("\0")
        .filter((entry) => entry !== ""),
    dropConnections,
    reachableFromRemote,
    stop,
  };
}

async function keygen(keyFile: string): Promise<void> {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", path.basename(keyFile), "-f", keyFile]);
}

/**
 * A PATH directory holding every command of /usr/local/bin and /usr/bin except Python's, so the
 * twinnopython user gets a shell with the usual tools and no python3, as on a bare rented box.
 */
function pathWithoutPython(target: string): string {
  fs.mkdirSync(target, { mode: 0o755 });
  const seen = new Set<string>();
  for (const source of ["/usr/local/bin", "/usr/bin"]) {
    if (!fs.existsSync(source)) continue;
    for (const name of fs.readdirSync(source)) {
      if (/^(python|pip|pydoc)/.test(name) || seen.has(name)) continue;
      seen.add(name);
      fs.symlinkSync(path.join(source, name), path.join(target, name));
    }
  }
  return target;
}

/** Resolves once sshd logs that it listens; rejects with its log when it exits first. */
function listening(sshd: ChildProcess, log: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error("sshd did not start listening within 10 s")), 10_000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(new Error(`${error.message}\n${log.join("")}`));
    };
    sshd.once("error", fail);
    sshd.once("exit", (code, signal) => fail(new Error(`sshd exited (${code ?? signal}) while starting`)));
    sshd.stderr?.setEncoding("utf8");
    // Read sshd's log for good: a full pipe would block it.
    let started = false;
    sshd.stderr?.on("data", (chunk: string) => {
      if (started) return;
      log.push(chunk);
      if (log.join("").includes(`Server listening on 127.0.0.1 port ${SSHD_PORT}`)) {
        started = true;
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function livePids(): number[] {
  return fs
    .readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

function readProc(pid: number, name: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${name}`, "utf8");
  } catch {
    return undefined; // the process is gone
  }
}

function statusField(pid: number, field: string): string | undefined {
  return readProc(pid, "status")
    ?.split("\n")
    .find((line) => line.startsWith(`${field}:`))
    ?.slice(field.length + 1)
    .trim();
}

function ownerUid(pid: number): number | undefined {
  const uid = statusField(pid, "Uid")?.split(/\s+/)[0];
  return uid === undefined ? undefined : Number(uid);
}

function processName(pid: number): string | undefined {
  return statusField(pid, "Name");
}

function commandLine(pid: number): string | undefined {
  return readProc(pid, "cmdline")?.split("\0").filter(Boolean).join(" ");
}

function descendsFrom(pid: number, ancestor: number): boolean {
  for (let current = pid; current > 1; ) {
    const parent = Number(statusField(current, "PPid"));
    if (parent === ancestor) return true;
    if (!parent) return false;
    current = parent;
  }
  return false;
}

/** SIGKILLs the processes and waits until /proc no longer lists them (zombies aside). */
async function killAndWait(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 5_000;
  while (pids.some(isAlive)) {
    if (Date.now() > deadline)
      throw new Error(`processes ${pids.filter(isAlive).join(", ")} survived SIGKILL`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function isAlive(pid: number): boolean {
  const state = statusField(pid, "State");
  return state !== undefined && !state.startsWith("Z") && !state.startsWith("X");
}
