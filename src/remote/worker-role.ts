import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import pg from "pg";
import { WorkerRoleError } from "./remote.errors.ts";

/**
 * A database role made for one `twin worker remote`: it may read the runs and the datasets they
 * name, write events, checkpoints and adapters, and update runs; nothing else (no history, no bot
 * tables, no userbot sessions). Its password is random, sent to the remote over the SSH link only.
 * The role lives as long as the session that made it: that session holds an advisory lock named
 * after it, so the next start drops any role whose lock is free (its twin crashed). Roles belong to
 * the whole server while advisory locks belong to one database, so each role's comment names its
 * database and only this database's roles are looked at.
 */

export const WORKER_ROLE_PREFIX = "twin_worker_";

/** Table → privileges (the trainer's queries: trainer/twin_trainer/run_queue.py, database.py). */
export const WORKER_GRANTS: Readonly<Record<string, readonly string[]>> = {
  training_runs: ["SELECT", "UPDATE"],
  // DELETE: a resumed run drops the lost attempt's events for the steps it trains again.
  training_events: ["SELECT", "INSERT", "DELETE"],
  // DELETE: a new checkpoint replaces the run's older ones (their chunks go by cascade).
  training_files: ["SELECT", "INSERT", "DELETE"],
  training_file_chunks: ["SELECT", "INSERT"],
  training_workers: ["SELECT", "INSERT", "UPDATE"],
  adapters: ["SELECT", "INSERT", "UPDATE"],
  base_models: ["SELECT"],
  datasets: ["SELECT"],
  dataset_examples: ["SELECT"],
};

/** Advisory locks' first key: "twin worker role". */
const LOCK_CLASS = 0x74776b72;

export type WorkerRole = { name: string; password: string };

/** An SQL identifier, quoted only when it must be (so the statements read as an administrator would write them). */
const id = (name: string) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : pg.escapeIdentifier(name));

/** The grants as SQL statements, for running them or for an administrator to run (pure). */
export function grantStatements(role: string, database: string, sequences: readonly string[]): string[] {
  return [
    `GRANT CONNECT ON DATABASE ${id(database)} TO ${id(role)}`,
    `GRANT USAGE ON SCHEMA public TO ${id(role)}`,
    ...Object.entries(WORKER_GRANTS).map(
      ([table, privileges]) => `GRANT ${privileges.join(", ")} ON public.${id(table)} TO ${id(role)}`,
    ),
    ...sequences.map((sequence) => `GRANT USAGE ON SEQUENCE ${sequence} TO ${id(role)}`),
  ];
}

/**
 * A SCRAM-SHA-256 verifier of `password` (RFC 7677, PostgreSQL's format): the role is created with
 * it, so the password itself never reaches the server's statement log.
 */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** The sequences behind the granted tables' serial ids (INSERT needs them). */
async function sequencesOf(client: pg.PoolClient): Promise<string[]> {
  const { rows } = await client.query<{ sequence: string }>(
    `SELECT format('%I.%I', n.nspname, s.relname) AS sequence
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_namespace n ON n.oid = s.relnamespace
       JOIN pg_class t ON t.oid = d.refobjid
      WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1::text[]) AND d.deptype IN ('a', 'i')
      ORDER BY 1`,
    [Object.keys(WORKER_GRANTS)],
  );
  return rows.map((row) => row.sequence);
}

async function dropRole(client: pg.PoolClient, name: string): Promise<void> {
  // Its sessions first (a remote worker still connected through a dying tunnel).
  await client
    .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [name])
    .catch(() => undefined);
  await client.query(`DROP OWNED BY ${pg.escapeIdentifier(name)}`);
  await client.query(`DROP ROLE ${pg.escapeIdentifier(name)}`);
}

const roleComment = (database: string) => `twin remote worker of database ${database}`;

/** Drops this database's worker roles that no live session holds (left by a twin that crashed); returns their names. */
export async function dropLeftoverRoles(client: pg.PoolClient): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>(
    `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)
       AND shobj_description(oid, 'pg_authid') = $2 || current_database() ORDER BY rolname`,
    [WORKER_ROLE_PREFIX, roleComment("")],
  );
  const dropped: string[] = [];
  for (const { rolname } of rows) {
    const free = await client.query<{ locked: boolean }>(
      "SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked",
      [LOCK_CLASS, rolname],
    );
    if (!free.rows[0]?.locked) continue; // its twin is alive
    try {
      await dropRole(client, rolname);
      dropped.push(rolname);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1, hashtext($2))", [LOCK_CLASS, rolname]);
    }
  }
  return dropped;
}

/** A role made for this session and dropped by `drop()`; `leftovers` were dropped first. */
export type HeldWorkerRole = WorkerRole & { leftovers: string[]; drop: () => Promise<void> };

/**
 * Makes the worker's role on a connection of its own, which holds the role's lock until `drop()`.
 * Without CREATEROLE, the error names the grants a role made beforehand needs (`--role`).
 */
export async function createWorkerRole(
  pool: pg.Pool,
  options: { validHours: number },
): Promise<HeldWorkerRole> {
  const client = await pool.connect();
  try {
    const leftovers = await dropLeftoverRoles(client);
    const name = `${WORKER_ROLE_PREFIX}${randomBytes(5).toString("hex")}`;
    const password = randomBytes(24).toString("base64url");
    const { rows } = await client.query<{ database: string }>("SELECT current_database() AS database");
    const database = rows[0]?.database as string;
    const sequences = await sequencesOf(client);
    const validUntil = new Date(Date.now() + options.validHours * 3_600_000).toISOString();
    await client.query("SELECT pg_advisory_lock($1, hashtext($2))", [LOCK_CLASS, name]);
    try {
      await client.query(
        `CREATE ROLE ${pg.escapeIdentifier(name)} LOGIN PASSWORD ${pg.escapeLiteral(scramVerifier(password))} VALID UNTIL ${pg.escapeLiteral(validUntil)}`,
      );
    } catch (error) {
      if ((error as { code?: string }).code === "42501") {
        throw new WorkerRoleError(noCreateRoleMessage(database, sequences), { cause: error });
      }
      throw error;
    }
    try {
      await client.query(
        `COMMENT ON ROLE ${pg.escapeIdentifier(name)} IS ${pg.escapeLiteral(roleComment(database))}`,
      );
      for (const statement of grantStatements(name, database, sequences)) await client.query(statement);
    } catch (error) {
      await dropRole(client, name).catch(() => undefined);
      throw error;
    }
    let dropped = false;
    return {
      name,
      password,
      leftovers,
      drop: async () => {
        if (dropped) return;
        dropped = true;
        let failure: Error | undefined;
        try {
          await dropRole(client, name);
        } catch (error) {
          failure = error as Error;
          throw error;
        } finally {
          client.release(failure ?? true); // the session ends, and its lock with it
        }
      },
    };
  } catch (error) {
    client.release(true); // with any lock it took
    throw error;
  }
}

/** What to ask an administrator for when twin may not create roles (pure). */
export function noCreateRoleMessage(database: string, sequences: readonly string[]): string {
  const role = "twin_worker";
  return [
    "the database user twin connects as may not create roles (no CREATEROLE), so twin cannot make the worker a role of its own.",
    `Ask an administrator to make one, once:`,
    `  CREATE ROLE ${role} LOGIN PASSWORD '…';`,
    ...grantStatements(role, database, sequences).map((statement) => `  ${statement};`),
    `then run twin worker remote with --role ${role} --role-password-file FILE (the password alone, in a file only you can read).`,
  ].join("\n");
}
