import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { checkTextSearch } from "../src/db/text-search.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";

after(stopEmbedded);

const repo = fileURLToPath(new URL("..", import.meta.url));

async function holds(database: TestDatabase, sql: string): Promise<boolean> {
  const { rows } = await database.pool.query<{ holds: boolean }>(`SELECT (${sql}) AS holds`);
  return rows[0]?.holds === true;
}

for (const backend of backends()) {
  describe(`text search on ${backend.name} PostgreSQL`, { timeout: 120_000 }, () => {
    let database: TestDatabase;
    before(async () => {
      database = await backend.fresh();
    });
    after(() => database?.close());

    it("passes the check, and reports pg_trgm as the server lists it", async () => {
      const { rows } = await database.pool.query(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'",
      );
      assert.deepEqual(await checkTextSearch(database.pool), { ok: true, trigram: rows.length === 1 });
    });

    it("finds 'друзья' in a message that says 'друзей' (Russian stemming)", async () => {
      assert.equal(
        await holds(
          database,
          "to_tsvector('russian', 'у меня много друзей') @@ plainto_tsquery('russian', 'друзья')",
        ),
        true,
      );
      assert.equal(
        await holds(
          database,
          "to_tsvector('russian', 'у меня много друзей') @@ plainto_tsquery('russian', 'кошки')",
        ),
        false,
      );
    });

    it("finds 'run' in a message that says 'running' (English stemming)", async () => {
      assert.equal(
        await holds(
          database,
          "to_tsvector('english', 'we were running late') @@ plainto_tsquery('english', 'runs')",
        ),
        true,
      );
    });

    it("rates a misspelling as similar with pg_trgm, where the server has it", async (t) => {
      if (!(await checkTextSearch(database.pool)).trigram) return t.skip("pg_trgm is not available here");
      await database.pool.query("CREATE EXTENSION IF NOT EXISTS pg_trgm");
      const { rows } = await database.pool.query<{ close: number; far: number }>(
        "SELECT similarity('привет', 'превет') AS close, similarity('привет', 'собака') AS far",
      );
      const { close, far } = rows[0] as { close: number; far: number };
      assert.ok(close > 0.3, `similarity('привет', 'превет') = ${close}`);
      assert.ok(far < close, `similarity('привет', 'собака') = ${far}, not below ${close}`);
    });
  });
}

describe("a new embedded cluster made without LANG, LC_ALL or LC_CTYPE", { timeout: 90_000 }, () => {
  it("is UTF-8 and passes the check", async () => {
    // A child process, so initdb sees an environment with no locale at all (slim images, services).
    const script = `
      import fs from "node:fs/promises";
      import os from "node:os";
      import path from "node:path";
      const { default: pg } = await import("pg");
      const { startEmbeddedPostgres } = await import("./src/db/embedded.ts");
      const { checkTextSearch } = await import("./src/db/text-search.ts");
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "twin-test-nolang-"));
      await fs.chmod(dir, 0o755);
      try {
        const server = await startEmbeddedPostgres({ dataDir: dir, port: 0 });
        const pool = new pg.Pool(server.connection);
        // pool.end() can resolve while a client's socket is still closing; the server's stop then
        // reaches it as an error event, which twin's own pool (db/client.ts) handles the same way.
        pool.on("error", () => undefined);
        try {
          const { rows } = await pool.query("SHOW server_encoding");
          const check = await checkTextSearch(pool);
          console.log(JSON.stringify({ encoding: rows[0].server_encoding, check }));
        } finally {
          await pool.end();
          await server.stop();
        }
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }`;
    const { LANG, LC_ALL, LC_CTYPE, DEBUG, ...env } = process.env;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      { cwd: repo, env, timeout: 60_000 },
    );
    const result = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");
    assert.equal(result.encoding, "UTF8");
    assert.equal(result.check?.ok, true, JSON.stringify(result.check));
  });
});

const externalUrl = process.env.TEST_DATABASE_URL;
describe("a database text search cannot read Russian on", {
  skip: externalUrl ? false : "TEST_DATABASE_URL is unset",
  timeout: 60_000,
}, () => {
  const made: string[] = [];
  const admin = () => new pg.Pool({ connectionString: externalUrl, max: 1 });
  after(async () => {
    const pool = admin();
    for (const name of made) await pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await pool.end();
  });

  async function checkOn(options: string, embedded?: string) {
    const name = `twin_test_${randomBytes(6).toString("hex")}`;
    const pool = admin();
    await pool.query(`CREATE DATABASE ${name} TEMPLATE template0 ${options}`);
    made.push(name);
    await pool.end();
    const url = new URL(externalUrl as string);
    url.pathname = `/${name}`;
    const onIt = new pg.Pool({ connectionString: url.toString(), max: 1 });
    try {
      return { name, check: await checkTextSearch(onIt, { embedded }) };
    } finally {
      await onIt.end();
    }
  }

  it("is refused when it is SQL_ASCII, with how to create a UTF-8 one", async () => {
    const { name, check } = await checkOn("ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'");
    assert.ok(!check.ok);
    assert.match(check.reason, new RegExp(`database ${name} is SQL_ASCII`));
    assert.match(check.reason, new RegExp(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`));
    assert.match(check.reason, /LC_CTYPE 'C\.UTF-8'/);
    assert.match(check.reason, /DATABASE_URL/);
  });

  it("is refused when it is UTF-8 under the C character type", async () => {
    const { check } = await checkOn("ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'");
    assert.ok(!check.ok);
    assert.match(check.reason, /character type C\b/);
  });

  it("is refused, for an embedded cluster, with moving its folder aside and importing again", async () => {
    const { check } = await checkOn(
      "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
      "/data/twin/postgres",
    );
    assert.ok(!check.ok);
    assert.match(check.reason, /move the folder \/data\/twin\/postgres aside/);
    assert.match(check.reason, /twin import/);
    assert.match(check.reason, /set DATABASE_URL to a UTF-8 server/);
    assert.doesNotMatch(check.reason, /CREATE DATABASE/);
  });
});
