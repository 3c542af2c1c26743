import createDebug from "debug";
import type pg from "pg";

/**
 * A bulk load into an empty table (the first import into `messages`) loads its rows straight in,
 * with the table's secondary indexes dropped, and builds them once at the end: one sorted build
 * per index costs a fraction of a million single-row inserts into each (issue 32). Unique indexes
 * and the primary key stay, so a key seen twice is still caught.
 *
 * The dropped indexes' definitions go into `deferred_indexes` in the transaction that drops them:
 * this module's own bookkeeping, made on first use like drizzle's migration journal, so that no
 * schema migration depends on it.
 * A bulk load holds a session advisory lock on its table while it loads; whoever finds definitions
 * stored and can take that lock (the load at its end, or any command after a crash: client.ts)
 * builds them again. The lock ends with its connection, so a killed load never leaves it held.
 */

const debug = createDebug("twin:db");

/** pg_advisory_lock's first key for "a bulk load is running" ("twin" in ASCII); the second is the table's oid. */
const BULK_LOAD_LOCK = 0x7477696e;
const lockArguments = "$1::int, $2::regclass::oid::int";

/** Twice the server's default: a sorted index build of a few million rows then stays in memory. */
const BUILD_MEMORY = "128MB";

/**
 * On `client`, outside a transaction: takes `table`'s bulk-load lock and, if the table is empty,
 * drops its secondary indexes and stores how to build them. True when the caller may load straight
 * into the table, holding the lock until `buildDeferredIndexes`; false (lock not held) otherwise.
 */
export async function deferIndexes(client: pg.PoolClient, table: string): Promise<boolean> {
  if (!(await tryLock(client, table))) return false; // another bulk load is running
  let deferred = false;
  try {
    await client.query("BEGIN");
    await client.query(`CREATE TABLE IF NOT EXISTS deferred_indexes (
      name text PRIMARY KEY,
      table_name text NOT NULL,
      definition text NOT NULL,
      deferred_at timestamptz NOT NULL DEFAULT now()
    )`);
    // No writer may add a row between the emptiness check and the drop.
    await client.query(`LOCK TABLE ${quoteIdentifier(table)} IN SHARE ROW EXCLUSIVE MODE`);
    const { rows: empty } = await client.query<{ empty: boolean }>(
      `SELECT NOT EXISTS (SELECT 1 FROM ${quoteIdentifier(table)}) AS empty`,
    );
    if (empty[0]?.empty) {
      const { rows: indexes } = await client.query<{ name: string; definition: string }>(
        `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = $1::regclass AND NOT i.indisunique AND NOT i.indisexclusion`,
        [table],
      );
      for (const index of indexes) {
        await client.query(
          `INSERT INTO deferred_indexes (name, table_name, definition) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO NOTHING`,
          [index.name, table, index.definition],
        );
        await client.query(`DROP INDEX ${quoteIdentifier(index.name)}`);
      }
      deferred = true;
      debug("%s is empty: loading straight in, %d index(es) built at the end", table, indexes.length);
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    await unlock(client, table);
    throw error;
  }
  if (!deferred) await unlock(client, table);
  return deferred;
}

/**
 * Builds every stored deferred index of each table no bulk load holds now, each index on its own
 * connection at once (an index build uses one core). `holder`: the connection of the load that
 * ends now, which holds `table`'s lock and gives it back here. Returns how many were built.
 */
export async function buildDeferredIndexes(
  pool: pg.Pool,
  holder?: { client: pg.PoolClient; table: string },
): Promise<number> {
  const client = holder?.client ?? (await pool.connect());
  const locked: string[] = holder ? [holder.table] : [];
  try {
    if (!holder) {
      const { rows: made } = await client.query<{ made: boolean }>(
        "SELECT to_regclass('deferred_indexes') IS NOT NULL AS made",
      );
      if (!made[0]?.made) return 0; // no bulk load ever ran here
      const { rows: tables } = await client.query<{ table_name: string }>(
        "SELECT DISTINCT table_name FROM deferred_indexes",
      );
      for (const { table_name: table } of tables) {
        if (await tryLock(client, table)) locked.push(table); // else a load runs: it builds them when it ends
      }
    }
    if (locked.length === 0) return 0;
    const { rows: indexes } = await client.query<{ name: string; table_name: string; definition: string }>(
      "SELECT name, table_name, definition FROM deferred_indexes WHERE table_name = ANY($1) ORDER BY name",
      [locked],
    );
    const started = performance.now();
    await Promise.all(indexes.map((index) => build(pool, index)));
    for (const table of new Set(indexes.map((index) => index.table_name))) {
      await client.query(`ANALYZE ${quoteIdentifier(table)}`); // the planner's first figures for the new rows
    }
    if (indexes.length > 0)
      debug("built %d deferred index(es) in %d ms", indexes.length, Math.round(performance.now() - started));
    return indexes.length;
  } finally {
    for (const table of locked) await unlock(client, table).catch(() => undefined);
    if (!holder) client.release();
  }
}

/** One index, built and forgotten in one transaction on its own connection. */
async function build(pool: pg.Pool, index: { name: string; definition: string }): Promise<void> {
  const builder = await pool.connect();
  const started = performance.now();
  try {
    await builder.query("BEGIN");
    await builder.query(`SET LOCAL maintenance_work_mem = '${BUILD_MEMORY}'`);
    await builder.query(ifNotExists(index.definition));
    await builder.query("DELETE FROM deferred_indexes WHERE name = $1", [index.name]);
    await builder.query("COMMIT");
    debug("built %s in %d ms", index.name, Math.round(performance.now() - started));
  } catch (error) {
    await builder.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    builder.release();
  }
}

async function tryLock(client: pg.PoolClient, table: string): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>(
    `SELECT pg_try_advisory_lock(${lockArguments}) AS locked`,
    [BULK_LOAD_LOCK, table],
  );
  return rows[0]?.locked ?? false;
}

async function unlock(client: pg.PoolClient, table: string): Promise<void> {
  await client.query(`SELECT pg_advisory_unlock(${lockArguments})`, [BULK_LOAD_LOCK, table]);
}

/** `CREATE INDEX name …` as pg_get_indexdef writes it, made safe to run again (pure). */
export function ifNotExists(definition: string): string {
  return definition.replace(/^CREATE (UNIQUE )?INDEX (?!IF NOT EXISTS )/, "CREATE $1INDEX IF NOT EXISTS ");
}

const quoteIdentifier = (name: string) => `"${name.replaceAll('"', '""')}"`;
