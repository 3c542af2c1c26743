import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { createBotMessagesRepository } from "../src/bot/bot-messages.repository.ts";
import { conversationPrompt } from "../src/bot/conversation-prompt.ts";
import { loadConfig } from "../src/config/config.ts";
import { openDatabase } from "../src/db/client.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { createMemoryRepository, type MemoryRepository } from "../src/history/memory/memory.repository.ts";
import type { RecalledWindow, RetrievalQuery } from "../src/history/memory/retriever.ts";
import { contextSettings } from "../src/inference/conversation-context.ts";
import { promptText } from "../src/inference/prompt.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { exportTextMessage } from "./support/telegram-export.ts";

after(stopEmbedded);

/**
 * Memory over a real history: a multi-chat export imported through the real import, indexed by the
 * real indexer, searched by the retriever, on each PostgreSQL the tests run against.
 */

const owner = { id: 1000, name: "Olga" };
const anna = { id: 2001, name: "Anna" };
const boris = { id: 2002, name: "Boris" };
const vera = { id: 2003, name: "Vera" };
/** Planted in Anna's chat only: no conversation outside her chats may ever recall it. */
const SECRET = "пароль от сейфа бирюзовыйкенгуру";
const GROUP = { id: 3003, name: "Походники" };
/** The supergroup's key, as the Bot API marks a channel: -(10^12 + id). */
const groupKey = -(1e12 + GROUP.id);
const INVITED = { id: 3004, name: "Book club" };

type Line = [who: { id: number; name: string }, text: string, minutesFromStart: number];

function chat(
  meta: { id: number; name: string; type: string },
  sessions: { start: string; lines: Line[] }[],
  extra: object[] = [],
) {
  let id = 1;
  const messages = sessions.flatMap((session) =>
    session.lines.map(([who, text, minutes]) => {
      const unix = Date.parse(`${session.start}Z`) / 1000 + minutes * 60;
      return exportTextMessage(id++, who, unix, text);
    }),
  );
  return { ...meta, messages: [...extra.map((m) => ({ ...m, id: id++ })), ...messages] };
}

function writeExport(dir: string): string {
  const chats = [
    chat({ id: anna.id, name: anna.name, type: "personal_chat" }, [
      {
        start: "2024-03-01T18:00:00",
        lines: [
          [anna, "привет", 0],
          [anna, "у меня много друзей в Казани", 1],
          [owner, "здорово", 2],
          [owner, `запиши: ${SECRET}`, 3],
          [anna, "записала", 4],
          [owner, "никому не говори", 5],
          [anna, "конечно", 6],
          [owner, "спасибо", 7],
          [anna, "пока", 8],
        ],
      },
      {
        start: "2024-03-01T21:00:00",
        lines: [
          [anna, "кстати, шашлык в субботу?", 0],
          [owner, "давай", 1],
        ],
      },
    ]),
    chat({ id: boris.id, name: boris.name, type: "personal_chat" }, [
      {
        start: "2024-04-02T10:00:00",
        lines: [
          [boris, "we were running late to the concert", 0],
          [owner, "kekekeke lolz", 1],
          [boris, "the drummer was amazing", 2],
        ],
      },
      {
        start: "2024-04-09T10:00:00",
        lines: [
          [boris, "where did you park the bicycle", 0],
          [owner, "near the bakery", 1],
        ],
      },
    ]),
    chat({ id: GROUP.id, name: GROUP.name, type: "private_supergroup" }, [
      {
        start: "2024-05-01T09:00:00",
        lines: [
          [boris, "кто идёт в поход на выходных", 0],
          [owner, "я иду, беру палатку", 1],
          [vera, "и я", 2],
        ],
      },
    ]),
    chat(
      { id: INVITED.id, name: INVITED.name, type: "private_group" },
      [{ start: "2024-06-01T09:00:00", lines: [[vera, "next book: the lighthouse keeper", 0]] }],
      [
        {
          type: "service",
          date: "2024-05-31T09:00:00",
          date_unixtime: String(Date.parse("2024-05-31T09:00:00Z") / 1000),
          actor: owner.name,
          actor_id: `user${owner.id}`,
          action: "invite_members",
          members: [boris.name],
          text: "",
          text_entities: [],
        },
      ],
    ),
  ];
  const file = path.join(dir, "result.json");
  fs.writeFileSync(
    file,
    JSON.stringify({
      personal_information: {
        user_id: owner.id,
        first_name: owner.name,
        last_name: "",
        phone_number: "",
        bio: "",
      },
      chats: { about: "", list: chats },
    }),
  );
  return file;
}

const texts = (windows: RecalledWindow[]) => windows.flatMap((w) => w.messages.map((m) => m.text));

for (const backend of backends()) {
  describe(`memory on ${backend.name} PostgreSQL`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let memory: MemoryRepository;
    let dir: string;
    const recall = (query: Partial<RetrievalQuery> & { text: string[] }) =>
      memory.retriever.retrieve({ scope: { kind: "all" }, exclude: [], limit: 3, ...query });

    before(async () => {
      database = await backend.fresh();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-memory-"));
      await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: writeExport(dir), batchSize: 1000, timeZone: "UTC" },
      );
      memory = createMemoryRepository(database);
    });
    after(async () => {
      await database?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it("indexes every message with text, each chat in its language, and says so", async () => {
      assert.deepEqual(await memory.progress(), { indexed: 0, total: 20, refusal: undefined });
      const seen: number[] = [];
      const outcome = await memory.index({ onProgress: (p) => seen.push(p.indexed) });
      assert.deepEqual(outcome, { status: "done", indexed: 20, total: 20 });
      assert.equal(seen.at(-1), 20);
      const { rows } = await database.pool.query<{ chat_id: string; config: string }>(
        "SELECT DISTINCT chat_id, config::text FROM message_search ORDER BY chat_id",
      );
      assert.deepEqual(
        rows.map((r) => `${r.chat_id}:${r.config}`),
        [`${anna.id}:russian`, `${boris.id}:english`, `-${INVITED.id}:english`, `${groupKey}:russian`].sort(),
      );
      assert.equal((await memory.index()).status, "done", "nothing left: a second run is a no-op");
    });

    it("finds 'друзей' for 'друзья' (Russian stemming) and 'running' for 'runs' (English)", async () => {
      assert.ok(
        texts(await recall({ text: ["а где твои друзья живут?"] })).includes("у меня много друзей в Казани"),
      );
      assert.ok(
        texts(await recall({ text: ["he runs every day"] })).includes("we were running late to the concert"),
      );
    });

    it("returns the window around a hit with its dates, cut at the session's gap", async () => {
      const [window] = await recall({ text: ["шашлык будет?"], limit: 1 });
      assert.ok(window);
      assert.equal(window.via, "text");
      assert.equal(window.chatId, anna.id);
      // The hit opens its session; the session three hours before is not part of its window.
      assert.deepEqual(
        window.messages.map((m) => [m.text, m.sentAt.toISOString(), m.senderId]),
        [
          ["кстати, шашлык в субботу?", "2024-03-01T21:00:00.000Z", anna.id],
          ["давай", "2024-03-01T21:01:00.000Z", owner.id],
        ],
      );
      const [middle] = await recall({ text: ["записала?"], limit: 1 });
      assert.deepEqual(
        middle?.messages.map((m) => m.text),
        [
          "у меня много друзей в Казани",
          "здорово",
          `запиши: ${SECRET}`,
          "записала",
          "никому не говори",
          "конечно",
          "спасибо",
        ],
        "three messages each side of the hit",
      );
    });

    it("leaves out the sessions already in the prompt, and what came after `before`", async () => {
      const span = {
        chatId: anna.id,
        from: new Date("2024-03-01T21:00:00Z"),
        to: new Date("2024-03-01T21:05:00Z"),
      };
      assert.deepEqual(texts(await recall({ text: ["шашлык"], exclude: [span] })), []);
      assert.deepEqual(
        texts(await recall({ text: ["шашлык"], before: new Date("2024-03-01T20:00:00Z") })),
        [],
      );
    });

    it("falls back to trigrams for slang and misspellings that no word matches", async (t) => {
      const { rows } = await database.pool.query("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'");
      if (rows.length === 0) return t.skip("this server has no pg_trgm");
      const windows = await recall({ text: ["kekekekeke lolzzz"], limit: 1 });
      assert.equal(windows[0]?.via, "trigram");
      assert.ok(texts(windows).includes("kekekeke lolz"));
      // In a friend's scope too (compared message by message there), and never outside it.
      const borisOwn = await recall({
        text: ["kekekekeke lolzzz"],
        limit: 1,
        scope: { kind: "friend", personId: boris.id },
      });
      assert.equal(borisOwn[0]?.via, "trigram");
      assert.ok(texts(borisOwn).includes("kekekeke lolz"));
      assert.deepEqual(
        texts(
          await recall({
            text: ["kekekekeke lolzzz"],
            limit: 1,
            scope: { kind: "friend", personId: anna.id },
          }),
        ),
        [],
      );
    });

    it("keeps a friend to the chats they took part in (the privacy rule)", async () => {
      const secretQuery = { text: ["какой пароль от сейфа? бирюзовыйкенгуру"], limit: 5 };
      const leaks = (windows: RecalledWindow[]) =>
        texts(windows).filter((text) => text.includes("бирюзовыйкенгуру"));
      assert.equal(
        leaks(await recall({ ...secretQuery, scope: { kind: "all" } })).length,
        1,
        "the owner's /talk may",
      );
      assert.equal(
        leaks(await recall({ ...secretQuery, scope: { kind: "friend", personId: anna.id } })).length,
        1,
      );
      assert.deepEqual(
        leaks(await recall({ ...secretQuery, scope: { kind: "friend", personId: boris.id } })),
        [],
      );
      assert.deepEqual(
        leaks(await recall({ ...secretQuery, scope: { kind: "friend", personId: vera.id } })),
        [],
      );
      assert.deepEqual(
        leaks(await recall({ ...secretQuery, scope: { kind: "group", chatId: groupKey } })),
        [],
      );
      // Boris wrote in the hiking group and is named in the book club's member list; Vera is not in his chats.
      const borisChats = new Set(
        (
          await recall({
            text: ["поход палатку", "lighthouse book", "bicycle bakery"],
            scope: { kind: "friend", personId: boris.id },
            limit: 10,
          })
        ).map((w) => w.chatId),
      );
      assert.deepEqual([...borisChats].sort(), [boris.id, -INVITED.id, groupKey].sort());
      const groupOnly = await recall({
        text: ["поход", "bicycle"],
        scope: { kind: "group", chatId: groupKey },
      });
      assert.deepEqual([...new Set(groupOnly.map((w) => w.chatId))], [groupKey]);
    });

    it("never puts chat A's secret into the prompt of a friend from chat B, with memory on", async () => {
      const messages = createBotMessagesRepository(database);
      const settings = contextSettings(loadConfig({ TWIN_TZ: "UTC", TWIN_MEMORY: "on" }), undefined);
      const promptFor = async (ref: { personId: number; mode: "friend" | "talk" }, updateId: number) => {
        await messages.addIncoming(ref, "слушай, какой там пароль от сейфа? бирюзовыйкенгуру?", updateId);
        const deps = {
          history: createHistoryRepository(database),
          messages,
          countTokens: (text: string) => Math.ceil(text.length / 3),
          retriever: memory.retriever,
          settings,
        };
        return promptText((await conversationPrompt(deps, ref, "Friend")).prompt.pieces);
      };
      const boris_ = await promptFor({ personId: boris.id, mode: "friend" }, 1);
      assert.doesNotMatch(boris_, /бирюзовыйкенгуру(?!\?)/u, "Boris's prompt holds only his own question");
      assert.ok(!boris_.includes(SECRET));
      // The same question in the owner's /talk with Boris may recall it: the rule, not the search, kept it out.
      const talk = await promptFor({ personId: boris.id, mode: "talk" }, 2);
      assert.ok(talk.includes(SECRET), "the owner's simulated chat draws on everything");
      // Without memory, or when memory finds nothing, the prompt is what it was.
      const off = { ...settings, memory: { ...settings.memory, enabled: false } };
      const plain = await conversationPrompt(
        {
          history: createHistoryRepository(database),
          messages,
          countTokens: (t) => Math.ceil(t.length / 3),
          settings: off,
        },
        { personId: boris.id, mode: "friend" },
        "Friend",
      );
      assert.equal(promptText(plain.prompt.pieces), boris_);
    });

    it("re-indexes an edited message and forgets a forgotten chat", async () => {
      await database.pool.query(
        "UPDATE messages SET text = 'we were cycling to the concert' WHERE chat_id = $1 AND text LIKE 'we were running%'",
        [boris.id],
      );
      assert.equal((await memory.progress()).indexed, 19, "the edited message left the index");
      await memory.index();
      assert.ok(texts(await recall({ text: ["cycling"] })).includes("we were cycling to the concert"));

      const history = createHistoryRepository(database);
      await history.forgetPersonalChat(anna.id, { forgetChat: async () => {}, forgetAll: async () => {} });
      const { rows } = await database.pool.query(
        "SELECT count(*)::int AS n FROM message_search WHERE chat_id = $1",
        [anna.id],
      );
      assert.equal(rows[0].n, 0);
      assert.deepEqual(texts(await recall({ text: ["бирюзовыйкенгуру"] })), []);
      assert.deepEqual(await memory.progress(), { indexed: 9, total: 9, refusal: undefined });
    });
  });
}

describe("memory on a server whose text search cannot read Russian", { timeout: 120_000 }, () => {
  const external = process.env.TEST_DATABASE_URL;
  it("refuses to index, says how to fix it, and keeps the history", {
    skip: !external && "needs TEST_DATABASE_URL",
  }, async () => {
    const name = `twin_test_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: external });
    await admin.connect();
    await admin.query(
      `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'`,
    );
    const url = new URL(external as string);
    url.pathname = `/${name}`;
    const database = await openDatabase(loadConfig({ DATABASE_URL: url.toString(), TWIN_TZ: "UTC" }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-memory-"));
    try {
      await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: writeExport(dir), batchSize: 1000, timeZone: "UTC" },
      );
      const memory = createMemoryRepository(database);
      const outcome = await memory.index();
      assert.equal(outcome.status, "refused");
      assert.match(outcome.refusal ?? "", new RegExp(`database ${name} is SQL_ASCII`));
      assert.match(outcome.refusal ?? "", /CREATE DATABASE .* ENCODING 'UTF8'/);
      assert.deepEqual(
        { indexed: outcome.indexed, total: outcome.total },
        { indexed: 0, total: 20 },
        "nothing indexed, every message still there",
      );
      assert.match((await memory.progress()).refusal ?? "", /SQL_ASCII/);
    } finally {
      await database.close();
      fs.rmSync(dir, { recursive: true, force: true });
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
