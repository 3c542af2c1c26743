import path from "node:path";
import { fileURLToPath } from "node:url";
import createDebug from "debug";
import { sql } from "drizzle-orm";
import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import type { Config } from "../config/config.ts";
import { DatabaseError } from "./db.errors.ts";
import { buildDeferredIndexes } from "./deferred-indexes.ts";
import { startEmbeddedPostgres } from "./embedded.ts";
import * as schema from "./schema.ts";

const debug = createDebug("twin:db");

export type Db = NodePgDatabase<typeof schema>;

/**
 * An open transaction, for a module that writes its own rows in another module's transaction
 * (the userbot's cursors in a history batch, the dataset's examples in a forget).
 */
export type Transaction = Pick<Db, "execute" | "select" | "insert" | "update" | "delete">;

/** Drizzle on one connection of the pool, for a transaction that also streams a COPY on it. */
export function onConnection(client: pg.PoolClient): Transaction {
  return drizzle(client, { schema });
}

/**
 * Runs `work` with drizzle on one connection of the pool, released after: for what must stay on one
 * session (an advisory lock, a SET) or run beside other work on connections of its own.
 */
export async function withConnection<T>(pool: pg.Pool, work: (db: Db) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await work(drizzle(client, { schema }));
  } finally {
    client.release();
  }
}

export type Database = {
  db: Db;
  /** The pool behind `db`, for the few things drizzle does not do (COPY, raw batches). */
  pool: pg.Pool;
  /** Where we are connected, without credentials, for messages. */
  describe: string;
  /** The full connection string, password included: only for a child's environment (the trainer worker), never printed. */
  url: string;
  /** The embedded cluster's folder, when the server is twin's own (its fixes differ from a DATABASE_URL server's). */
  embeddedDir?: string | undefined;
  /** How many migrations this open applied (0: the schema was current): new tables may need filling. */
  migrationsApplied?: number | undefined;
  close(): Promise<void>;
};

export const migrationsFolder = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../migrations",
);

/** `postgres://user:secret@host:5432/db` → `host:5432/db`: safe to print. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`;
  } catch {
    return "(unparseable DATABASE_URL)";
  }
}

/**
 * Connects to `DATABASE_URL`, or starts the embedded server in the data folder when it is unset.
 * Same driver and migrations either way; `close()` ends the pool and stops an embedded server.
 */
export async function openDatabase(config: Config, options: { migrate?: boolean } = {}): Promise<Database> {
  // A twin leaving the embedded server as this one joins may be stopping it: the join waits for
  // that twin's lock and can be let in a moment before the shutdown ends its connections. Then
  // the server is started again, as when it was found stopped.
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect(config, options);
    } catch (error) {
      const stopping = (error as { cause?: { code?: string } }).cause?.code;
      if (config.databaseUrl || attempt >= 3 || !["57P03", "57P01", "ECONNREFUSED"].includes(stopping ?? ""))
        throw error;
      debug("the embedded server was shutting down as we joined; starting again");
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
    }
  }
}

async function connect(config: Config, options: { migrate?: boolean }): Promise<Database> {
  const embedded = config.databaseUrl
    ? undefined
    : await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort });
  const pool = embedded
    ? new pg.Pool({ ...embedded.connection, max: 4 })
    : new pg.Pool({ connectionString: config.databaseUrl, max: 4 });
  // An idle client losing its server must not crash the process; queries report their own errors.
  pool.on("error", (error) => debug("idle client error: %s", error.message));
  const describe = embedded
    ? `embedded PostgreSQL in ${path.join(config.dataDir, "postgres")}`
    : redactUrl(config.databaseUrl as string);
  const close = async () => {
    await pool.end();
    await embedded?.stop();
  };
  try {
    const client = await pool.connect();
    client.release();
  } catch (cause) {
    await close();
    throw new DatabaseError(`Cannot connect to ${describe}: ${(cause as Error).message}`, { cause });
  }
  const db = drizzle(pool, { schema });
  const url = embedded
    ? `postgres://${encodeURIComponent(embedded.connection.user)}:${encodeURIComponent(embedded.connection.password)}@${embedded.connection.host}:${embedded.connection.port}/${embedded.connection.database}`
    : (config.databaseUrl as string);
  const embeddedDir = embedded ? path.join(config.dataDir, "postgres") : undefined;
  const database: Database = { db, pool, describe, url, embeddedDir, close };
  if (options.migrate !== false) {
    try {
      database.migrationsApplied = await runMigrations(database);
      // A bulk import that crashed left its indexes unbuilt: build them before anything reads.
      await buildDeferredIndexes(pool);
    } catch (error) {
      await close();
      throw error;
    }
  }
  return database;
}

/** Applies the SQL migrations in `migrations/` that this database has not seen yet; returns how many. */
export async function runMigrations(database: Pick<Database, "db" | "describe">): Promise<number> {
  const applied = async () => {
    const { rows: table } = await database.db.execute<{ present: boolean }>(
      sql`SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS present`,
    );
    if (!table[0]?.present) return 0; // a new database: the table comes with the first migration
    const { rows } = await database.db.execute<{ count: number }>(
      sql`SELECT count(*)::int AS count FROM drizzle.__drizzle_migrations`,
    );
    return rows[0]?.count ?? 0;
  };
  try {
    const before = await applied();
    await migrate(database.db, { migrationsFolder });
    return (await applied()) - before;
  } catch (cause) {
    throw new DatabaseError(`Migrating ${database.describe} failed: ${(cause as Error).message}`, { cause });
  }
}
