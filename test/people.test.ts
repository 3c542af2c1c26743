import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { SESSION_GAP_MS } from "../src/dataset/sessions.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { parsePersonQuery } from "../src/history/person-lookup.ts";
import { loadConversationContext } from "../src/inference/history-context.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
after(() => stopEmbedded());

/**
 * The #ubuntu IRC export has four people whose names differ only in case or a trailing "_":
 * Dr_Willis (10313586, 696 messages), Dr_Willis_ (92747702, 60), dr_willis (65413223, 40) and
 * Dr_willis (22456004, 14) — all in one group, none in a personal chat.
 */
for (const backend of backends()) {
  describe(`finding a person on ${backend.name} PostgreSQL`, { timeout: 300_000 }, () => {
    let database: TestDatabase;
    before(async () => {
      database = await backend.fresh();
      await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: fixtures.irc, timeZone: "UTC", batchSize: 5000 },
      );
    });
    after(() => database?.close());
    const lookup = (text: string, includeOwner = false) =>
      createHistoryRepository(database).lookupPerson(parsePersonQuery(text) as never, { includeOwner });

    it("resolves a name only when exactly one person has exactly it, case-sensitively", async () => {
      const exact = await lookup("Dr_Willis");
      assert.equal(exact.found?.id, 10313586);
      assert.equal(exact.found?.messages, 696, "group messages count");
      assert.ok(exact.found?.lastMessageAt instanceof Date);
      assert.equal((await lookup("dr_willis")).found?.id, 65413223, "its own exact name");
      assert.equal((await lookup("@Dr_Willis")).found?.id, 10313586, "a leading @ is dropped");
    });

    it("offers the candidates, most active first, for anything else; an id always resolves", async () => {
      const loose = await lookup("DR_WILLIS");
      assert.equal(loose.found, undefined);
      assert.deepEqual(
        loose.candidates?.map((person) => [person.id, person.messages]),
        [
          [10313586, 696],
          [92747702, 60],
          [65413223, 40],
          [22456004, 14],
        ],
      );
      assert.equal((await lookup("10313586")).found?.name, "Dr_Willis");
      assert.deepEqual((await lookup("999")).found, {
        id: 999,
        name: null,
        messages: 0,
        lastMessageAt: null,
      });
      assert.deepEqual((await lookup("Nobody Of That Name")).candidates, []);
      const withoutOwner = await lookup("ActionParsnip");
      assert.ok(
        withoutOwner.found?.id !== 64232718 &&
          !withoutOwner.candidates?.some((person) => person.id === 64232718),
        "never the owner…",
      );
      assert.equal((await lookup("ActionParsnip", true)).found?.id, 64232718, "…unless asked");
    });

    it("names the people the owner talks with in a group-only history, and gives them real history", async () => {
      const history = createHistoryRepository(database);
      const stats = await history.stats({ top: 5, gapMinutes: 10 });
      assert.equal(stats.topPartners.length, 0, "no personal chats at all");
      assert.equal(stats.partners.length, 5, `partners: ${JSON.stringify(stats.partners)}`);
      const [top, next] = stats.partners;
      assert.ok(top && next && top.messages >= next.messages, "busiest first");
      assert.ok(top.groupMessages > 0 && top.personalMessages === 0, "counted in shared group sessions");
      assert.ok(!stats.partners.some((p) => p.id === 64232718), "never the owner");
      const context = await loadConversationContext(history, top.id, "", SESSION_GAP_MS);
      assert.ok(context.history.length > 0, "their shared sessions are the conversation's history");
      const speakers = new Set(context.history.map((turn) => turn.speaker));
      assert.deepEqual(
        [...speakers].sort(),
        [context.owner.name, context.person.name].sort(),
        "the two of them",
      );
    });

    it("twin chat refuses a name nobody has and lists the people the owner talks with most", () => {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: database.url, TWIN_TZ: "UTC" };
      const chat = spawnSync(
        process.execPath,
        [path.join(root, "bin/twin.js"), "chat", "--with", "Nobody Of That Name"],
        { cwd: root, env, encoding: "utf8", input: "" },
      );
      assert.equal(chat.status, 2, chat.stderr);
      assert.match(chat.stderr, /nobody of that name in the history; the people you talk with most:/);
      assert.match(chat.stderr, /\(\d+\) · \d+ messages/);
    });

    it("twin chat lists the candidates of a loose name and exits with 2, before loading any model", () => {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: database.url, TWIN_TZ: "UTC" };
      const chat = spawnSync(
        process.execPath,
        [path.join(root, "bin/twin.js"), "chat", "--as", "DR_WILLIS"],
        {
          cwd: root,
          env,
          encoding: "utf8",
          input: "",
        },
      );
      assert.equal(chat.status, 2, chat.stderr);
      assert.match(chat.stderr, /--as “DR_WILLIS” is not one person's exact name; pass one of these ids:/);
      assert.match(chat.stderr, /Dr_Willis \(10313586\) · 696 messages · last \d{4}-\d{2}-\d{2}/);
      assert.ok(chat.stderr.indexOf("10313586") < chat.stderr.indexOf("22456004"), "the most active first");
    });
  });
}
