import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { User } from "grammy/types";
import pg from "pg";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { createMemoryRepository } from "../src/history/memory/memory.repository.ts";
import { BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded } from "./support/databases.ts";
import { fixtureOwners, fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";
import { writePersonalChatExport } from "./support/personal-chat-export.ts";
import { runTwin } from "./support/twin-cli.ts";

/**
 * The memory index follows every import without being asked: `twin import` leaves a background
 * run behind it, and the bot indexes at start (the backfill of a database that had history before
 * the index) and after its own /import. `twin stats`, `twin memory status` and /status show it.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-memory-index-test-"));
fs.chmodSync(scratch, 0o755); // as root, the embedded PostgreSQL runs as its own user
after(async () => {
  await stopEmbedded();
  fs.rmSync(scratch, { recursive: true, force: true });
});

async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

describe("twin import on the embedded database", { timeout: 300_000 }, () => {
  const dataDir = path.join(scratch, "cli");
  const env: NodeJS.ProcessEnv = { ...process.env, TWIN_DATA_DIR: dataDir, TWIN_TZ: "UTC" };
  delete env.DATABASE_URL;
  delete env.TWIN_MEMORY_INDEX;
  const twin = (...args: string[]) => runTwin(args, { cwd: root, env });

  it("leaves the index complete behind it without another command; stats, memory status and memory index say so", async () => {
    const imported = await twin("import", fixtures.cuda, "--owner", fixtureOwners.cuda);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /new\s*│\s*218/);

    const complete = await waitUntil("the background index run", async () => {
      const status = await twin("memory", "status");
      assert.equal(status.code, 0, status.stderr);
      return /^memory index: complete \(\d+ messages\)\n$/.test(status.stdout) ? status.stdout : undefined;
    });
    const indexed = Number(/\((\d+) messages\)/.exec(complete)?.[1]);
    assert.ok(indexed > 100, `the fixture's messages with text are indexed: ${complete}`);

    const stats = await twin("stats");
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, new RegExp(`\\nmemory index: complete \\(${indexed} messages\\)\\n$`));
    const json = JSON.parse((await twin("stats", "--json")).stdout);
    assert.deepEqual(json.memoryIndex, { indexed, total: indexed });

    const again = await twin("memory", "index");
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, `memory index: already complete (${indexed} messages)\n`);

    // The background run is a twin process like any other: once it and every command have left,
    // the last of them stopped the embedded server.
    await waitUntil("the embedded server stopped by the last twin", async () =>
      fs.existsSync(path.join(dataDir, "postgres/postmaster.pid")) ? undefined : true,
    );
  });
});

const externalUrl = process.env.TEST_DATABASE_URL;
describe("twin memory on a database whose text search cannot read Russian", {
  skip: externalUrl ? false : "TEST_DATABASE_URL is unset",
  timeout: 120_000,
}, () => {
  it("index exits 1 with the refusal; memory status and stats show it; a default dataset is built without memory, an explicit --memory on refused", async () => {
    const name = `twin_test_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: externalUrl });
    await admin.connect();
    await admin.query(
      `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'`,
    );
    try {
      const url = new URL(externalUrl as string);
      url.pathname = `/${name}`;
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: url.toString() };
      const twin = (...args: string[]) => runTwin(args, { cwd: root, env });
      const refused = await twin("memory", "index");
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(
        refused.stderr,
        new RegExp(`^twin: memory index refused: .*database ${name} is SQL_ASCII`),
      );
      const status = await twin("memory", "status");
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /^memory index: refused: .*SQL_ASCII/);
      assert.match((await twin("stats")).stdout, /\nmemory index: refused: .*SQL_ASCII/);

      const imported = await twin("import", fixtures.cuda, "--owner", fixtureOwners.cuda);
      assert.equal(imported.code, 0, imported.stderr);
      // Memory is on by default, but not at the price of no dataset: built without, and said.
      const built = await twin("dataset");
      assert.equal(built.code, 0, built.stderr);
      assert.match(built.stderr, /^twin: memory is off for this dataset: .*SQL_ASCII/m);
      assert.doesNotMatch(built.stdout, /^memory: /m, "no memory line for a dataset without memory");
      const datasetId = Number(/^dataset (\d+):/.exec(built.stdout)?.[1]);
      const pool = new pg.Client({ connectionString: url.toString() });
      await pool.connect();
      try {
        const { rows } = await pool.query(
          "SELECT settings->'memory'->>'enabled' AS enabled FROM datasets WHERE id = $1",
          [datasetId],
        );
        assert.equal(rows[0]?.enabled, "false", "the manifest records memory off, so serving keeps it off");
      } finally {
        await pool.end();
      }
      // Asked for by name, memory that cannot work is an error, with nothing built.
      const asked = await twin("dataset", "--memory", "on");
      assert.equal(asked.code, 1, asked.stdout);
      assert.match(asked.stderr, /--memory on needs the memory index: .*SQL_ASCII/);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});

const owner: User = { id: Number(fixtureOwners.cuda), is_bot: false, first_name: "Hamid" };
const TOKEN = "123456789:AAE-memory_index_test_token_local_1";

for (const backend of backends()) {
  describe(`the bot's memory index on ${backend.name} PostgreSQL`, { timeout: 600_000 }, () => {
    it("fills the index of an existing history at start, after /import and after an import elsewhere; /status shows it", async () => {
      const database = await backend.fresh();
      const server = new BotApiServer(TOKEN);
      await server.start();
      try {
        // History stored before the index existed: imported without a twin process to index it.
        await importDesktopExport(
          { historyRepository: createHistoryRepository(database) },
          { input: fixtures.cuda, owner: fixtureOwners.cuda, timeZone: "UTC", batchSize: 1000 },
        );
        const memory = createMemoryRepository(database);
        const before = await memory.progress();
        assert.equal(before.indexed, 0);
        assert.ok(before.total > 100);

        const env: NodeJS.ProcessEnv = {
          ...process.env,
          DATABASE_URL: database.url,
          TWIN_DATA_DIR: path.join(scratch, `bot-${backend.name}`),
          TWIN_BOT_TOKEN: TOKEN,
          TWIN_OWNER_ID: fixtureOwners.cuda,
          TWIN_BOT_API_ROOT: server.apiRoot,
          TWIN_MODEL: testModel(),
          TWIN_WORKER: "external",
        };
        const bot = spawn(process.execPath, [path.join(root, "bin/twin.js"), "bot"], { cwd: root, env });
        let output = "";
        bot.stderr.on("data", (chunk) => {
          output += chunk;
        });
        const exited = new Promise<number | null>((resolve) => bot.on("exit", resolve));
        try {
          await server.waitFor(
            "the bot polling",
            () => {
              if (bot.exitCode !== null) throw new Error(`the bot ended: ${output}`);
              return server.sent("getUpdates").length > 0;
            },
            120_000,
          );
          const texted = () => server.sent("sendMessage", owner.id).map((call) => String(call.params.text));
          /** Asks /status until its memory line is `line`. */
          const statusUntil = (line: string) =>
            waitUntil(`/status saying “${line}”`, async () => {
              const asked = texted().length;
              server.sendMessage(owner, { text: "/status" });
              await server.waitFor("the status", () => texted().length > asked);
              const status = texted().at(-1) as string;
              assert.match(status, /^Memory: /m, status);
              return status.split("\n").includes(line) ? status : undefined;
            });
          await statusUntil(`Memory: every message indexed (${before.total})`);
          assert.equal((await memory.progress()).indexed, before.total);

          // A personal chat sent to /import: indexed once the job is done.
          const file = writePersonalChatExport(
            fs.mkdtempSync(path.join(scratch, "export-")),
            { id: owner.id, name: "Hamid Khorshidian" },
            { id: 5001, name: "Anna Petrova" },
          );
          server.sendMessage(owner, { text: "/import" });
          await server.waitFor("the import prompt", () => texted().some((t) => t.includes("20 MB")));
          const content = fs.readFileSync(file);
          const fileId = server.addFile(content, "result.json");
          server.sendMessage(owner, {
            document: {
              file_id: fileId,
              file_unique_id: fileId,
              file_name: "result.json",
              file_size: content.length,
            },
          });
          await server.waitFor("the finished import", () =>
            server
              .sent("editMessageText", owner.id)
              .some((c) => /^Importing result\.json: \d+ messages/.test(c.params.text)),
          );
          const { total } = await memory.progress();
          assert.ok(total > before.total, "the import added messages with text");
          await statusUntil(`Memory: every message indexed (${total})`);

          // An import by another process whose own index run never came (a `docker compose run --rm`
          // ends it with its container): the bot's watch sees the import and indexes it.
          await importDesktopExport(
            { historyRepository: createHistoryRepository(database) },
            {
              input: writePersonalChatExport(
                fs.mkdtempSync(path.join(scratch, "export-")),
                { id: owner.id, name: "Hamid Khorshidian" },
                { id: 5002, name: "Boris Ivanov" },
              ),
              timeZone: "UTC",
              batchSize: 1000,
            },
          );
          const later = (await memory.progress()).total;
          assert.ok(later > total);
          await statusUntil(`Memory: every message indexed (${later})`);
        } finally {
          bot.kill("SIGTERM");
          assert.equal(await exited, 0, `a clean stop: ${output}`);
        }
      } finally {
        await server.close();
        await database.close();
      }
    });
  });
}

describe("a history from before the memory index, on its first command after the upgrade", {
  skip: externalUrl ? false : "TEST_DATABASE_URL is unset",
  timeout: 300_000,
}, () => {
  it("is backfilled in the background by whichever command applied the migration", async () => {
    const name = `twin_test_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: externalUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(externalUrl as string);
    url.pathname = `/${name}`;
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: url.toString(), TWIN_TZ: "UTC" };
    const twin = (...args: string[]) => runTwin(args, { cwd: root, env });
    try {
      const imported = await twin("import", fixtures.cuda, "--owner", fixtureOwners.cuda);
      assert.equal(imported.code, 0, imported.stderr);
      // Back to the schema before migration 0015: no index, and the migration not yet applied.
      const old = new pg.Client({ connectionString: url.toString() });
      await old.connect();
      await old.query(`DROP TABLE message_search, search_terms;
        DROP FUNCTION message_search_forget, message_search_stale CASCADE;
        DROP INDEX messages_members;
        DELETE FROM drizzle.__drizzle_migrations WHERE id = (SELECT max(id) FROM drizzle.__drizzle_migrations)`);
      await old.end();

      delete env.TWIN_MEMORY_INDEX;
      const stats = await twin("stats");
      assert.equal(stats.code, 0, stats.stderr);
      await waitUntil("the backfill after the migration", async () => {
        const status = await twin("memory", "status");
        return /^memory index: complete \(\d{3,} messages\)\n$/.test(status.stdout) ? true : undefined;
      });
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
