import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import type { Api } from "telegram";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { pullCursorReader } from "../src/userbot/cursors.ts";
import { MIGRATED_ID_SHIFT } from "../src/userbot/dialogs.ts";
import { type PullOptions, type PullProgress, pullHistory } from "../src/userbot/pull.ts";
import { PullPausedError } from "../src/userbot/userbot.errors.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { ScriptedAccount, type ScriptedChat } from "./support/scripted-account.ts";

const OWNER = 121569222;
after(stopEmbedded);

function account() {
  const scripted = new ScriptedAccount();
  const anna = scripted.addUser(5001, "Anna", { lastName: "Petrova" });
  const boris = scripted.addUser(5002, "Boris");
  const gone = scripted.addUser(5003, "", { deleted: true });
  const bot = scripted.addUser(9090, "Helper", { bot: true, username: "helper_bot" });
  const annaChat = scripted.personalChat(anna, 250);
  const borisChat = scripted.personalChat(boris, 130);
  scripted.personalChat(bot, 12);
  const group = scripted.group(777, "Pizza club", [anna, boris, gone], 60);
  return { scripted, annaChat, borisChat, group };
}

async function pull(database: TestDatabase, scripted: ScriptedAccount, options: Partial<PullOptions> = {}) {
  const slept: number[] = [];
  const reports: PullProgress[] = [];
  const summary = await pullHistory(
    scripted,
    { historyRepository: createHistoryRepository(database), cursors: pullCursorReader(database.db) },
    {
      ownerId: OWNER,
      pageSize: 100,
      sleep: async (ms) => {
        slept.push(ms);
      },
      onProgress: (p) => reports.push(p),
      ...options,
    },
  );
  return { summary, slept, reports };
}

/** The stored message ids of a chat, in order. */
async function storedIds(database: TestDatabase, chatId: number): Promise<number[]> {
  const { rows } = await database.pool.query<{ id: string }>(
    "SELECT message_id AS id FROM messages WHERE chat_id = $1 ORDER BY message_id",
    [chatId],
  );
  return rows.map((r) => Number(r.id));
}
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

for (const backend of backends()) {
  describe(`pulling history live (${backend.name} PostgreSQL)`, { timeout: 120_000 }, () => {
    it("pulls personal chats oldest first, page by page, and leaves groups and bots out by default", async () => {
      const database = await backend.fresh();
      try {
        const { scripted } = account();
        const { summary, reports } = await pull(database, scripted);
        assert.deepEqual(await storedIds(database, 5001), range(250), "Anna's chat: every message, no gap");
        assert.deepEqual(await storedIds(database, 5002), range(130), "Boris's chat");
        assert.deepEqual(await storedIds(database, 9090), [], "bot chats are not personal chats");
        assert.deepEqual(await storedIds(database, -1_000_000_000_777), [], "groups only when asked");
        assert.equal(summary.new, 380);
        // 1 dialogs page; Anna: 3 pages + 1 empty; Boris: 2 + 1.
        assert.equal(summary.requests, 8, "100 messages a request, oldest first");
        const last = reports.at(-1) as PullProgress;
        assert.deepEqual([last.chatsDone, last.chatsTotal, last.messages], [2, 2, 380]);
        const { rows } = await database.pool.query("SELECT type, title FROM chats WHERE id = 5001");
        assert.deepEqual(
          rows[0],
          { type: "personal_chat", title: "Anna Petrova" },
          "the chat as an export names it",
        );
        const sticker = await database.pool.query(
          "SELECT kind, emoji FROM messages WHERE chat_id = 5001 AND message_id = 17",
        );
        assert.deepEqual(sticker.rows[0], { kind: "sticker", emoji: "😂" });
      } finally {
        await database.close();
      }
    });

    it("resumes after a crash between batches with no duplicate and no gap", async () => {
      const database = await backend.fresh();
      try {
        const { scripted } = account();
        scripted.crashAfter = 3; // dialogs, then two pages of Anna's chat, then the connection drops
        await assert.rejects(pull(database, scripted), /scripted crash/);
        assert.deepEqual(await storedIds(database, 5001), range(200), "two whole pages were committed");
        const calls = scripted.historyCalls.length;
        const { summary } = await pull(database, scripted);
        assert.equal(
          scripted.historyCalls[calls]?.afterId,
          200,
          "the second pull starts after the last committed page",
        );
        assert.deepEqual(await storedIds(database, 5001), range(250));
        assert.deepEqual(await storedIds(database, 5002), range(130));
        assert.equal(summary.new, 180, "only what the first pull had not stored");
      } finally {
        await database.close();
      }
    });

    it("sleeps through a flood wait and reports it; a long one pauses the pull", async () => {
      const database = await backend.fresh();
      try {
        const { scripted } = account();
        scripted.floodWaits.set(3, 7);
        const { slept, summary, reports } = await pull(database, scripted);
        assert.ok(slept.includes(7000), `slept the 7 s Telegram asked for: ${slept}`);
        assert.equal(summary.floodWaitSeconds, 7);
        assert.ok(
          reports.some((r) => r.floodWaitSeconds === 7),
          "the wait was reported",
        );
        assert.deepEqual(await storedIds(database, 5001), range(250), "and nothing was lost");

        scripted.extend(scripted.chats[0] as ScriptedChat, 10);
        scripted.floodWaits.set(scripted.requests + 2, 3600);
        await assert.rejects(
          pull(database, scripted),
          (error) => error instanceof PullPausedError && error.seconds === 3600,
        );
      } finally {
        await database.close();
      }
    });

    it("pulls through a takeout session when Telegram grants one, and finishes it in every case", async () => {
      const database = await backend.fresh();
      try {
        const granted = account().scripted;
        granted.takeout = "grant";
        await pull(database, granted);
        assert.deepEqual(granted.takeoutsFinished, [true], "finished as a success");

        const failing = account().scripted;
        failing.takeout = "grant";
        failing.crashAfter = 2;
        await assert.rejects(pull(database, failing), /scripted crash/);
        assert.deepEqual(failing.takeoutsFinished, [false], "finished as a failure when the pull failed");

        const delayed = account().scripted;
        delayed.takeout = 3600;
        const { reports, summary } = await pull(database, delayed);
        assert.match(
          String(reports[0]?.notice),
          /approve this data export.*3600 s/,
          "the owner is asked to approve it",
        );
        assert.deepEqual(delayed.takeoutsFinished, [], "no takeout to finish");
        assert.equal(summary.chats, 2, "and the pull went on without it");
      } finally {
        await database.close();
      }
    });

    it("a second pull fetches only what is new", async () => {
      const database = await backend.fresh();
      try {
        const { scripted, annaChat } = account();
        await pull(database, scripted);
        scripted.extend(annaChat, 5);
        const calls = scripted.historyCalls.length;
        const { summary } = await pull(database, scripted);
        assert.equal(summary.new, 5);
        assert.deepEqual(
          scripted.historyCalls.slice(calls).map((c) => [c.chat, c.afterId]),
          [
            [5001, 250],
            [5001, 255],
            [5002, 130],
          ],
          "each chat asked only for messages after its cursor",
        );
      } finally {
        await database.close();
      }
    });

    it("pulls groups when asked, with deleted accounts and service messages", async () => {
      const database = await backend.fresh();
      try {
        const { scripted } = account();
        await pull(database, scripted, { groups: true });
        const group = -1_000_000_000_777;
        assert.deepEqual(await storedIds(database, group), range(60));
        const { rows } = await database.pool.query(
          "SELECT message_id, kind, action, sender_id, sender_name FROM messages WHERE chat_id = $1 AND message_id IN (1, 2) ORDER BY message_id",
          [group],
        );
        assert.deepEqual(rows, [
          {
            message_id: "1",
            kind: "service",
            action: "create_channel",
            sender_id: String(OWNER),
            sender_name: "Hamid Khorshidian",
          },
          { message_id: "2", kind: "text", action: null, sender_id: "5003", sender_name: null },
        ]);
        const chat = await database.pool.query("SELECT type, title FROM chats WHERE id = $1", [group]);
        assert.deepEqual(chat.rows[0], { type: "private_supergroup", title: "Pizza club" });
      } finally {
        await database.close();
      }
    });

    it("stores a basic group migrated to a supergroup inside the supergroup, ids shifted as exports shift them", async () => {
      const database = await backend.fresh();
      try {
        const { scripted, group } = account();
        const members = [scripted.users.get(5001), scripted.users.get(5002)] as Api.User[];
        scripted.migratedGroup(555, group, members, 30);
        await pull(database, scripted, { groups: true });
        const supergroup = -1_000_000_000_777;
        const ids = await storedIds(database, supergroup);
        assert.deepEqual(
          ids,
          [...range(30).map((id) => id + MIGRATED_ID_SHIFT), ...range(60)],
          "the old group's 30 messages at negative ids, then the supergroup's own",
        );
        assert.deepEqual(await storedIds(database, -555), [], "nothing under the old group's own key");
        const { rows } = await database.pool.query(
          "SELECT reply_to_message_id, action FROM messages WHERE chat_id = $1 AND message_id IN ($2, $3) ORDER BY message_id",
          [supergroup, 5 + MIGRATED_ID_SHIFT, 30 + MIGRATED_ID_SHIFT],
        );
        assert.deepEqual(rows, [
          { reply_to_message_id: String(4 + MIGRATED_ID_SHIFT), action: null },
          { reply_to_message_id: null, action: "migrate_to_supergroup" },
        ]);
        const again = await pull(database, scripted, { groups: true });
        assert.equal(again.summary.new, 0, "each source keeps its own cursor");
      } finally {
        await database.close();
      }
    });

    it("a chat imported from an export and then pulled live gains only the newer messages, row for row equal", async () => {
      const database = await backend.fresh();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-pull-export-"));
      try {
        const { scripted, annaChat } = account();
        const file = path.join(dir, "result.json");
        fs.writeFileSync(file, JSON.stringify(scripted.exportOf([annaChat], 200)));
        await importDesktopExport(
          { historyRepository: createHistoryRepository(database) },
          { input: file, batchSize: 1000, timeZone: "UTC" },
        );
        const before = await database.pool.query(
          "SELECT * FROM messages WHERE chat_id = 5001 ORDER BY message_id",
        );
        const { summary } = await pull(database, scripted);
        assert.equal(summary.new, 50 + 130, "Anna's 50 newer messages and Boris's chat");
        assert.equal(summary.updated, 0, "no row the export wrote changed");
        assert.equal(summary.unchanged, 200);
        const after = await database.pool.query(
          "SELECT * FROM messages WHERE chat_id = 5001 AND message_id <= 200 ORDER BY message_id",
        );
        assert.deepEqual(after.rows, before.rows, "the imported rows are exactly as they were");
      } finally {
        await database.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
