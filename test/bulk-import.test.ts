import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatabase } from "../src/db/client.ts";
import { buildDeferredIndexes, deferIndexes, ifNotExists } from "../src/db/deferred-indexes.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { exportTextMessage, writeAccountExport } from "./support/telegram-export.ts";

/**
 * A first import into an empty `messages` table loads straight in with the secondary indexes
 * dropped and builds them at the end (issue 32). What it must keep: the same indexes after as
 * before, the same rows as the staged merge, and a crash that the next command finishes.
 */

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bulk-import-test-"));
after(async () => {
  fs.rmSync(scratch, { recursive: true, force: true });
  await stopEmbedded();
});

const owner = { id: 1, name: "Owner" };
const friend = { id: 2, name: "Friend" };

async function messageIndexes(database: TestDatabase): Promise<string[]> {
  const { rows } = await database.pool.query<{ definition: string }>(
    "SELECT indexdef AS definition FROM pg_indexes WHERE tablename = 'messages' ORDER BY indexname",
  );
  return rows.map((row) => row.definition);
}

async function deferredCount(database: TestDatabase): Promise<number> {
  const { rows } = await database.pool.query("SELECT count(*)::int AS count FROM deferred_indexes");
  return rows[0].count;
}

describe("ifNotExists", () => {
  it("makes pg_get_indexdef's statement safe to run again, once", () => {
    const btree = "CREATE INDEX messages_sender ON public.messages USING btree (sender_id, chat_id)";
    assert.equal(
      ifNotExists(btree),
      "CREATE INDEX IF NOT EXISTS messages_sender ON public.messages USING btree (sender_id, chat_id)",
    );
    assert.equal(ifNotExists(ifNotExists(btree)), ifNotExists(btree));
    assert.equal(
      ifNotExists("CREATE UNIQUE INDEX u ON t (a)"),
      "CREATE UNIQUE INDEX IF NOT EXISTS u ON t (a)",
    );
  });
});

for (const backend of backends()) {
  describe(`bulk first import into ${backend.name} PostgreSQL`, () => {
    let database: TestDatabase;
    let schemaIndexes: string[];
    before(async () => {
      database = await backend.fresh();
      schemaIndexes = await messageIndexes(database);
    });
    after(async () => {
      await database.close();
    });
    const reset = () => database.pool.query("TRUNCATE messages, chats, people, owner, imports");
    const importFile = (input: string, batchSize: number) =>
      importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input, timeZone: "UTC", batchSize, owner: "64232718" },
      );

    it("leaves the schema's indexes as they were, and the rows equal to a staged import's", async () => {
      assert.ok(schemaIndexes.length >= 4, `the primary key and the secondary indexes: ${schemaIndexes}`);
      await reset();
      const bulk = await importFile(fixtures.irc, 5000);
      assert.deepEqual(await messageIndexes(database), schemaIndexes);
      assert.equal(await deferredCount(database), 0);
      await database.pool.query("CREATE TEMP TABLE bulk_rows AS SELECT * FROM messages");

      // The same file into a table that is not empty takes the staged merge: the same rows.
      const { rowCount: deleted } = await database.pool.query(
        "DELETE FROM messages WHERE message_id % 7 <> 0",
      );
      assert.ok(deleted && deleted > 1000);
      const staged = await importFile(fixtures.irc, 5000);
      assert.equal(staged.new, deleted);
      assert.equal(staged.new + staged.unchanged, bulk.new);
      const columns =
        "chat_id, message_id, sender_id, sender_name, sent_at, edited_at, kind, text, emoji, reply_to_message_id, forwarded_from_name, forwarded_from_id, via_bot, action, details::text, source";
      const { rows } = await database.pool.query(
        `SELECT (SELECT count(*) FROM (SELECT ${columns} FROM bulk_rows EXCEPT SELECT ${columns} FROM messages) a)::int AS only_bulk,
                (SELECT count(*) FROM (SELECT ${columns} FROM messages EXCEPT SELECT ${columns} FROM bulk_rows) b)::int AS only_staged`,
      );
      assert.deepEqual(rows[0], { only_bulk: 0, only_staged: 0 });
      await database.pool.query("DROP TABLE bulk_rows");
    });

    it("falls back to merging when a chat listed twice repeats a stored key", async () => {
      await reset();
      const texts = (from: number, to: number) =>
        Array.from({ length: to - from + 1 }, (_, i) =>
          exportTextMessage(
            from + i,
            i % 2 ? owner : friend,
            1_700_000_000 + (from + i) * 60,
            `m${from + i}`,
          ),
        );
      const chat = (messages: object[]) => ({
        name: friend.name,
        type: "personal_chat",
        id: friend.id,
        messages,
      });
      // The second listing repeats 41-60 and adds 61-80; batches of 25 put it after a committed batch.
      const file = writeAccountExport(fs.mkdtempSync(path.join(scratch, "twice-")), owner, [
        chat(texts(1, 60)),
        chat(texts(41, 80)),
      ]);
      const summary = await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: file, timeZone: "UTC", batchSize: 25 },
      );
      assert.equal(summary.messages, 100);
      assert.equal(summary.new, 80);
      assert.equal(summary.unchanged, 20);
      const { rows } = await database.pool.query("SELECT count(*)::int AS count FROM messages");
      assert.equal(rows[0].count, 80);
      assert.deepEqual(await messageIndexes(database), schemaIndexes);
      assert.equal(await deferredCount(database), 0);
    });

    it("after a crash mid-load, the next open of the database builds the indexes again", async () => {
      await reset();
      const client = await database.pool.connect();
      assert.equal(await deferIndexes(client, "messages"), true);
      await client.query(
        `INSERT INTO messages (chat_id, message_id, sent_at, kind, text, source)
         SELECT 2, g, now(), 'text', 'x', 'desktop_export' FROM generate_series(1, 100) g`,
      );
      assert.equal(await deferredCount(database), schemaIndexes.length - 1);
      assert.equal((await messageIndexes(database)).length, 1, "only the primary key is left");

      // While the load holds its lock, nobody else builds or defers.
      assert.equal(await buildDeferredIndexes(database.pool), 0);
      const other = await database.pool.connect();
      assert.equal(await deferIndexes(other, "messages"), false);
      other.release();

      client.release(true); // the process dies: its session, and its lock, end
      const reopened = await openDatabase(database.config);
      try {
        assert.deepEqual(await messageIndexes(database), schemaIndexes);
        assert.equal(await deferredCount(database), 0);
      } finally {
        await reopened.close();
      }
    });

    it("does not defer into a table that holds messages", async () => {
      const client = await database.pool.connect();
      try {
        assert.equal(await deferIndexes(client, "messages"), false);
        assert.deepEqual(await messageIndexes(database), schemaIndexes);
        // The lock was given back.
        const { rows } = await database.pool.query(
          "SELECT count(*)::int AS count FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        );
        assert.equal(rows[0].count, 0);
      } finally {
        client.release();
      }
    });
  });
}
