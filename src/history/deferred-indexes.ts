import createDebug from "debug";
import type pg from "pg";

/**
 * A first import into an empty `messages` table loads its rows straight in, with the secondary
 * indexes dropped, and builds them once at the end: one sorted build per index costs a fraction of
 * a million single-row inserts into each (issue 32). The primary key stays, so a message id seen
 * twice is still caught.
 *
 * The dropped indexes' definitions go into `deferred_indexes` in the transaction that drops them.
 * A bulk import holds a session advisory lock while it loads; whoever finds definitions stored and
 * can take that lock (the import at its end, or any command after a crash, see client.ts) builds
 * them again. The lock ends with its connection, so a killed import never leaves it held.
 */

const debug = createDebug("twin:import");

/** pg_advisory_lock's key for "a bulk import is loading messages" ("twin" in ASCII). */
const BULK_LOAD_LOCK = 0x7477696e;

/** Twice the server's default: a sorted index build of a few million rows then stays in memory. */
const BUILD_MEMORY = "128MB";

/**
 * On `client`, outside a transaction: takes the bulk-load lock and, if `messages` is empty, drops
 * its secondary indexes and stores how to build them. True when the caller may load straight into
 * `messages`, holding the lock until `buildDeferredIndexes`; false (lock not held) otherwise.
 */
export async function deferMessageIndexes(client: pg.PoolClient): Promise<boolean> {
  const { rows: locked } = await client.query<{ locked: boolean }>(
    "SELECT pg_try_advisory_lock($1) AS locked",
    [BULK_LOAD_LOCK],
  );
  if (!locked[0]?.locked) return false; // another bulk import is loading
  let deferred = false;
  try {
    await client.query("BEGIN");
    // No writer may add a row between the emptiness check and the drop.
    await client.query("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE");
    const { rows: empty } = await client.query<{ empty: boolean }>(
      "SELECT NOT EXISTS (SELECT 1 FROM messages) AS empty",
    );
    if (empty[0]?.empty) {
      const { rows: indexes } = await client.query<{ name: string; definition: string }>(
        `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'messages'::regclass AND NOT i.indisunique`,
      );
      for (const index of indexes) {
        await client.query(
          "INSERT INTO deferred_indexes (name, definition) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
          [index.name, index.definition],
        );
        await client.query(`DROP INDEX ${quoteIdentifier(index.name)}`);
      }
      deferred = true;
      debug("messages is empty: loading straight in, %d index(es) built at the end", indexes.length);
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    await unlock(client);
    throw error;
  }
  if (!deferred) await unlock(client);
  return deferred;
}

/**
 * Builds every stored deferred index, each on its own connection at once (an index build uses one
 * core), unless a bulk import is loading now. `holder` is the connection that holds the lock (the
 * import ending its load); without it the lock is taken and given back here. Returns how many
 * indexes were built.
 */
export async function buildDeferredIndexes(pool: pg.Pool, holder?: pg.PoolClient): Promise<number> {
  const client = holder ?? (await pool.connect());
  try {
    if (!holder) {
      const { rows: pending } = await client.query<{ count: number }>(
        "SELECT count(*)::int AS count FROM deferred_indexes",
      );
      if (!pending[0]?.count) return 0;
      const { rows: locked } = await client.query<{ locked: boolean }>(
        "SELECT pg_try_advisory_lock($1) AS locked",
        [BULK_LOAD_LOCK],
      );
      if (!locked[0]?.locked) return 0; // an import is loading: it builds them when it ends
    }
    const { rows: indexes } = await client.query<{ name: string; definition: string }>(
      "SELECT name, definition FROM deferred_indexes ORDER BY name",
    );
    const started = performance.now();
    await Promise.all(
      indexes.map(async (index) => {
        const builder = await pool.connect();
        try {
          await builder.query("BEGIN");
          await builder.query(`SET LOCAL maintenance_work_mem = '${BUILD_MEMORY}'`);
          await builder.query(ifNotExists(index.definition));
          await builder.query("DELETE FROM deferred_indexes WHERE name = $1", [index.name]);
          await builder.query("COMMIT");
        } catch (error) {
          await builder.query("ROLLBACK").catch(() => undefined);
          throw error;
        } finally {
          builder.release();
        }
      }),
    );
    if (indexes.length > 0) {
      await client.query("ANALYZE messages");
      debug("built %d deferred index(es) in %d ms", indexes.length, Math.round(performance.now() - started));
    }
    return indexes.length;
  } finally {
    await unlock(client).catch(() => undefined);
    if (!holder) client.release();
  }
}

async function unlock(client: pg.PoolClient): Promise<void> {
  await client.query("SELECT pg_advisory_unlock($1)", [BULK_LOAD_LOCK]);
}

/** `CREATE INDEX name …` as pg_get_indexdef writes it, made safe to run again (pure). */
export function ifNotExists(definition: string): string {
  return definition.replace(/^CREATE (UNIQUE )?INDEX (?!IF NOT EXISTS )/, "CREATE $1INDEX IF NOT EXISTS ");
}

const quoteIdentifier = (name: string) => `"${name.replaceAll('"', '""')}"`;
