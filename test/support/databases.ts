import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { type Config, loadConfig } from "../../src/config/config.ts";
import { type Database, openDatabase } from "../../src/db/client.ts";
import { type EmbeddedServer, startEmbeddedPostgres } from "../../src/db/embedded.ts";

/**
 * The PostgreSQL servers tests run against: always the embedded one (started once per test file,
 * through the product's own code), and the server at TEST_DATABASE_URL when it is set (`.ci/run`
 * points it at 127.0.0.1:5432). Each test gets a fresh database with the real migrations applied.
 */
export type Backend = { name: string; fresh(): Promise<TestDatabase> };
export type TestDatabase = Database & { config: Config };

let embedded: Promise<{ server: EmbeddedServer; dir: string }> | undefined;

function embeddedServer() {
  embedded ??= (async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "twin-test-pg-"));
    await fs.chmod(dir, 0o755);
    return { server: await startEmbeddedPostgres({ dataDir: dir, port: 0 }), dir };
  })();
  return embedded;
}

async function freshOn(adminUrl: string, urlFor: (database: string) => string): Promise<TestDatabase> {
  const name = `twin_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const config = loadConfig({ DATABASE_URL: urlFor(name), TWIN_TZ: "UTC" });
  const database = await openDatabase(config);
  return {
    ...database,
    config,
    close: async () => {
      await database.close();
      const cleanup = new pg.Client({ connectionString: adminUrl });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

function embeddedUrl(server: EmbeddedServer, database: string): string {
  const { user, password, host, port } = server.connection;
  return `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${database}`;
}

export function backends(): Backend[] {
  const list: Backend[] = [
    {
      name: "embedded",
      async fresh() {
        const { server } = await embeddedServer();
        return freshOn(embeddedUrl(server, "postgres"), (db) => embeddedUrl(server, db));
      },
    },
  ];
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    list.push({
      name: "external",
      fresh: () =>
        freshOn(external, (db) => {
          const url = new URL(external);
          url.pathname = `/${db}`;
          return url.toString();
        }),
    });
  }
  return list;
}

/** Stops the embedded server of this test file; call from an `after` hook. */
export async function stopEmbedded(): Promise<void> {
  if (!embedded) return;
  const { server, dir } = await embedded;
  embedded = undefined;
  await server.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
