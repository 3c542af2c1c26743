import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { createModelsRepository } from "../src/models/models.repository.ts";
import { WorkerRoleError } from "../src/remote/remote.errors.ts";
import { createWorkerRole, WORKER_ROLE_PREFIX } from "../src/remote/worker-role.ts";
import { createRunsRepository } from "../src/training/runs.repository.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";

after(stopEmbedded);

/** The database's URL as another user. */
function urlAs(database: TestDatabase, user: string, password: string): string {
  const url = new URL(database.url);
  url.username = user;
  url.password = encodeURIComponent(password);
  return url.toString();
}

async function connectAs(database: TestDatabase, user: string, password: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: urlAs(database, user, password) });
  await client.connect();
  return client;
}

async function roleExists(database: TestDatabase, name: string): Promise<boolean> {
  const { rows } = await database.pool.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]);
  return rows.length > 0;
}

for (const backend of backends()) {
  describe(`a remote worker's database role on ${backend.name} PostgreSQL`, { timeout: 120_000 }, () => {
    let database: TestDatabase;
    let runId: number;
    before(async () => {
      database = await backend.fresh();
      const model = await createModelsRepository(database).add({ ggufPath: testModel() });
      const { rows } = await database.pool.query<{ id: number }>(
        "INSERT INTO datasets (status, format_version, settings) VALUES ('ready', 2, '{}') RETURNING id",
      );
      const run = await createRunsRepository(database).queue({
        datasetId: rows[0]?.id as number,
        baseModelId: model.id,
        config: { file: "smollm2-135m-lora-cpu.yaml", set: {} },
        method: "lora",
        estimate: { steps: 1, seconds: null },
        target: "remote:box",
        needsGpu: false,
      });
      runId = run.id;
    });
    after(() => database?.close());

    it("reads and writes the training queue, cannot read the history, bot or userbot tables, and is gone once dropped", async () => {
      const role = await createWorkerRole(database.pool, { validHours: 1 });
      assert.ok(role.name.startsWith(WORKER_ROLE_PREFIX));
      const worker = await connectAs(database, role.name, role.password);
      try {
        const runs = await worker.query("SELECT id, target FROM training_runs");
        assert.deepEqual(runs.rows, [{ id: runId, target: "remote:box" }]);
        await worker.query("UPDATE training_runs SET heartbeat_at = now() WHERE id = $1", [runId]);
        await worker.query("INSERT INTO training_events (run_id, event, data) VALUES ($1, 'log', '{}')", [
          runId,
        ]);
        await worker.query(
          "INSERT INTO training_workers (id, host, pid, hardware) VALUES ('box:1', 'box', 1, '{}')",
        );
        await worker.query("SELECT count(*) FROM dataset_examples");
        for (const table of [
          "messages",
          "people",
          "chats",
          "bot_messages",
          "bot_storage",
          "userbot_sessions",
          "friends",
        ]) {
          await assert.rejects(worker.query(`SELECT * FROM ${table} LIMIT 1`), /permission denied/, table);
        }
        await assert.rejects(worker.query("DELETE FROM training_runs"), /permission denied/);
        await assert.rejects(worker.query("CREATE TABLE stolen (x int)"), /permission denied/);
      } finally {
        await worker.end().catch(() => undefined);
      }
      await role.drop();
      assert.equal(await roleExists(database, role.name), false, "dropped when the worker ends");
    });

    it("drops a role its crashed twin left behind, and leaves a live twin's alone", async () => {
      const crashed = await createWorkerRole(database.pool, { validHours: 1 });
      const live = await createWorkerRole(database.pool, { validHours: 1 });
      // A crash: the session that made the role (and holds its lock) ends without dropping it.
      await database.pool.query(
        `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.objid::int = hashtext($1) AND l.granted`,
        [crashed.name],
      );
      assert.equal(await roleExists(database, crashed.name), true, "the crash left it");
      const next = await createWorkerRole(database.pool, { validHours: 1 });
      assert.deepEqual(next.leftovers, [crashed.name]);
      assert.equal(await roleExists(database, crashed.name), false);
      assert.equal(await roleExists(database, live.name), true, "a live twin keeps its role");
      await live.drop();
      await next.drop();
      await assert.rejects(crashed.drop(), "its session is gone (and its connection is let go)");
    });

    it("without CREATEROLE, names the grants a role made beforehand needs", async () => {
      const user = `twin_plain_${randomBytes(4).toString("hex")}`;
      const password = randomBytes(12).toString("hex");
      await database.pool.query(`CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
      const pool = new pg.Pool({ connectionString: urlAs(database, user, password) });
      try {
        await assert.rejects(createWorkerRole(pool, { validHours: 1 }), (error: Error) => {
          assert.ok(error instanceof WorkerRoleError, String(error));
          assert.match(error.message, /no CREATEROLE/);
          assert.match(error.message, /GRANT SELECT, UPDATE ON public\.training_runs TO twin_worker/);
          assert.match(error.message, /GRANT USAGE ON SEQUENCE public\.training_events_id_seq/);
          assert.match(error.message, /--role twin_worker --role-password-file/);
          return true;
        });
      } finally {
        await pool.end();
        await database.pool.query(`DROP ROLE ${user}`);
      }
    });
  });
}
