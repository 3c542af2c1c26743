import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ExportFormatError, OwnerUnknownError } from "../src/history/desktop-import/import.errors.ts";
import { type ImportOptions, importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { HistoryError } from "../src/history/history.errors.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtureOwners, fixtures, readJson } from "./support/fixtures.ts";

/**
 * What an export should become, computed here straight from the raw JSON, independently of the
 * importer: chat keys, unique messages, senders, and per-message facts to compare row by row.
 */
function expectationsOf(file: string) {
  const raw = readJson(file);
  const chats = raw.chats ? [...raw.chats.list, ...(raw.left_chats?.list ?? [])] : [raw];
  const chatKey = (chat: { id: number; type: string }) =>
    ["personal_chat", "bot_chat", "saved_messages"].includes(chat.type)
      ? chat.id
      : chat.type === "private_group"
        ? -chat.id
        : Number(`-100${chat.id}`);
  const messages = new Map<string, any>();
  let duplicates = 0;
  const senders = new Set<string>();
  for (const chat of chats) {
    for (const message of chat.messages) {
      const key = `${chatKey(chat)}/${message.id}`;
      if (messages.has(key)) {
        duplicates++;
        continue;
      }
      messages.set(key, message);
      const sender = message.type === "service" ? message.actor_id : message.from_id;
      if (sender !== undefined && sender !== null) senders.add(String(sender).replace(/^user/, ""));
    }
  }
  const text = (m: any) =>
    typeof m.text === "string"
      ? m.text
      : m.text.map((p: any) => (typeof p === "string" ? p : p.text)).join("");
  const all = [...messages.values()];
  return {
    chats: chats.map(chatKey),
    messages,
    duplicates,
    people: senders.size,
    services: all.filter((m) => m.type === "service").length,
    stickers: all.filter((m) => m.media_type === "sticker").length,
    replies: all.filter((m) => m.reply_to_message_id !== undefined).length,
    edited: all.filter((m) => m.edited !== undefined).length,
    text,
  };
}

type Row = { chat_id: string; message_id: string; text: string; sent_at: Date; kind: string };

async function rows(database: TestDatabase): Promise<Row[]> {
  return (await database.pool.query<Row>("SELECT chat_id, message_id, text, sent_at, kind FROM messages"))
    .rows;
}

async function count(database: TestDatabase, sql: string): Promise<number> {
  return Number((await database.pool.query(sql)).rows[0].count);
}

function importInto(database: TestDatabase, options: Partial<ImportOptions> & { input: string }) {
  return importDesktopExport(
    { historyRepository: createHistoryRepository(database) },
    { timeZone: "UTC", batchSize: 1000, ...options },
  );
}

/** A single-chat export of the personal chat with "Friend" (id 2), as Telegram Desktop writes one. */
const friendChat = (messages: unknown[]) => ({ name: "Friend", type: "personal_chat", id: 2, messages });

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-import-test-"));
after(async () => {
  fs.rmSync(scratch, { recursive: true, force: true });
  await stopEmbedded();
});

for (const backend of backends()) {
  describe(`desktop import into ${backend.name} PostgreSQL`, () => {
    let database: TestDatabase;
    before(async () => {
      database = await backend.fresh();
    });
    after(async () => {
      await database.close();
    });
    const reset = () => database.pool.query("TRUNCATE messages, chats, people, owner, imports");

    for (const [name, file, owner, tz] of [
      ["ENSIA (current format, whole account)", fixtures.ensia, fixtureOwners.ensia, "Africa/Algiers"],
      ["CUDA (old format, single chat)", fixtures.cuda, fixtureOwners.cuda, "Asia/Tehran"],
      ["#ubuntu IRC (42,904 messages)", fixtures.irc, undefined, "UTC"],
    ] as const) {
      it(`stores every message of ${name} as the raw JSON says, and a re-import adds nothing`, async () => {
        await reset();
        const expected = expectationsOf(file);
        const summary = await importInto(database, { input: file, owner, timeZone: tz });
        assert.equal(summary.messages, expected.messages.size);
        assert.equal(summary.new, expected.messages.size);
        assert.equal(summary.skipped["duplicate message id in the same chat"] ?? 0, expected.duplicates);
        assert.equal(summary.chats, expected.chats.length);

        const stored = await rows(database);
        assert.equal(stored.length, expected.messages.size);
        for (const row of stored) {
          const raw = expected.messages.get(`${row.chat_id}/${row.message_id}`);
          assert.ok(raw, `unexpected row ${row.chat_id}/${row.message_id}`);
          assert.equal(row.text, expected.text(raw), `text of ${row.message_id}`);
          if (raw.date_unixtime) assert.equal(row.sent_at.getTime(), Number(raw.date_unixtime) * 1000);
        }
        const chatIds = (await database.pool.query("SELECT id FROM chats ORDER BY id")).rows.map((r) =>
          Number(r.id),
        );
        assert.deepEqual(
          chatIds,
          [...new Set(expected.chats)].sort((a, b) => a - b),
        );
        assert.equal(await count(database, "SELECT count(*) FROM people"), expected.people);
        assert.equal(
          await count(database, "SELECT count(*) FROM messages WHERE kind = 'service'"),
          expected.services,
        );
        assert.equal(
          await count(database, "SELECT count(*) FROM messages WHERE kind = 'sticker' AND emoji IS NOT NULL"),
          expected.stickers,
        );
        assert.equal(
          await count(database, "SELECT count(*) FROM messages WHERE reply_to_message_id IS NOT NULL"),
          expected.replies,
        );
        assert.equal(
          await count(database, "SELECT count(*) FROM messages WHERE edited_at IS NOT NULL"),
          expected.edited,
        );
        assert.equal(
          await count(database, "SELECT count(*) FROM messages WHERE details->>'path' LIKE '(File%'"),
          0,
        );

        const again = await importInto(database, { input: file, owner, timeZone: tz });
        assert.deepEqual([again.new, again.updated, again.unchanged], [0, 0, expected.messages.size]);
        assert.equal((await rows(database)).length, expected.messages.size);
      });
    }

    it("converts the old format's local times with the owner's time zone", async () => {
      await reset();
      await importInto(database, {
        input: fixtures.cuda,
        owner: fixtureOwners.cuda,
        timeZone: "Asia/Tehran",
      });
      // Message 3 was written at 15:00:04 in Tehran, which was UTC+4:30 in May 2019.
      const { rows: found } = await database.pool.query("SELECT sent_at FROM messages WHERE message_id = 3");
      assert.equal(found[0].sent_at.toISOString(), "2019-05-12T10:30:04.000Z");
    });

    it("names the owner from personal_information, --owner <id> or --owner <name>", async () => {
      await reset();
      const irc = await importInto(database, { input: fixtures.irc });
      assert.deepEqual(irc.owner, { id: 64232718, name: "ActionParsnip" });
      await reset();
      const byName = await importInto(database, { input: fixtures.cuda, owner: "Hamid Khorshidian" });
      assert.equal(byName.owner.id, 121569222);
      const stats = await createHistoryRepository(database).stats({ gapMinutes: 10 });
      assert.equal(stats.owner?.id, 121569222);
      assert.ok(stats.partners.length > 0, "the owner's partners in the group are listed");
      assert.ok(
        stats.partners.every((p) => p.personalMessages === 0 && p.groupMessages > 0),
        "from the group alone",
      );
    });

    it("refuses an export without an owner before storing anything, and says how to pass one", async () => {
      await reset();
      await assert.rejects(importInto(database, { input: fixtures.cuda }), (error) => {
        assert.ok(error instanceof OwnerUnknownError, String(error));
        assert.match(error.message, /--owner/);
        return true;
      });
      for (const table of ["messages", "chats", "people", "owner", "imports"])
        assert.equal(await count(database, `SELECT count(*) FROM ${table}`), 0, `no row in ${table}`);
    });

    it("refuses another account's export into a database that has an owner", async () => {
      await reset();
      await importInto(database, { input: fixtures.cuda, owner: fixtureOwners.cuda });
      const before = await count(database, "SELECT count(*) FROM messages");
      await assert.rejects(importInto(database, { input: fixtures.irc }), HistoryError);
      assert.equal(await count(database, "SELECT count(*) FROM messages"), before);
    });

    it("adds only what is new from a newer export, applies edits, and never undoes them with an older one", async () => {
      await reset();
      const older = readJson(fixtures.ensia);
      const newer = structuredClone(older);
      const messages = newer.chats.list[0].messages;
      const edited = messages.find((m: any) => m.type === "message" && typeof m.text === "string");
      edited.text = "edited later ✏️";
      edited.edited_unixtime = String(Number(edited.date_unixtime) + 10_000_000);
      messages.push({
        ...edited,
        id: 99_999,
        text: "brand new",
        edited: undefined,
        edited_unixtime: undefined,
      });
      const newerFile = path.join(scratch, "newer.json");
      fs.writeFileSync(newerFile, JSON.stringify(newer));

      const first = await importInto(database, { input: fixtures.ensia, owner: fixtureOwners.ensia });
      const second = await importInto(database, { input: newerFile, owner: fixtureOwners.ensia });
      assert.deepEqual([second.new, second.updated, second.unchanged], [1, 1, first.messages - 1]);
      const textOf = async (id: number) =>
        (await database.pool.query("SELECT text FROM messages WHERE message_id = $1", [id])).rows[0].text;
      assert.equal(await textOf(edited.id), "edited later ✏️");
      assert.equal(await textOf(99_999), "brand new");

      const third = await importInto(database, { input: fixtures.ensia, owner: fixtureOwners.ensia });
      assert.deepEqual([third.new, third.updated], [0, 0]);
      assert.equal(await textOf(edited.id), "edited later ✏️");
    });

    it("keeps one of two messages with the same id in a chat and counts the other", async () => {
      await reset();
      const file = path.join(scratch, "duplicate.json");
      const message = (id: number, text: string) => ({
        id,
        type: "message",
        date: "2024-01-01T10:00:00",
        date_unixtime: "1704103200",
        from: "Friend",
        from_id: "user2",
        text,
      });
      fs.writeFileSync(file, JSON.stringify(friendChat([message(1, "a"), message(2, "b"), message(1, "c")])));
      const summary = await importInto(database, { input: file, owner: "1" });
      assert.equal(summary.new, 2);
      assert.deepEqual(summary.skipped, { "duplicate message id in the same chat": 1 });
      const { rows: kept } = await database.pool.query("SELECT text FROM messages WHERE message_id = 1");
      assert.deepEqual(kept, [{ text: "a" }]);
    });

    it("fails a truncated file at its byte offset, keeps what was committed, and a re-run completes it", async () => {
      await reset();
      const full = fs.readFileSync(fixtures.irc);
      const truncated = path.join(scratch, "truncated.json");
      fs.writeFileSync(truncated, full.subarray(0, Math.floor(full.length * 0.6)));
      const total = expectationsOf(fixtures.irc).messages.size;

      await assert.rejects(importInto(database, { input: truncated, batchSize: 2000 }), (error) => {
        assert.ok(error instanceof ExportFormatError, String(error));
        assert.match(error.message, /^truncated\.json: byte \d+/);
        assert.match(error.message, /chat -1001234567890/);
        assert.match(error.message, /truncated file/);
        assert.ok(
          error.offset > full.length * 0.59 && error.offset <= full.length * 0.6,
          `offset ${error.offset}`,
        );
        return true;
      });
      const kept = await count(database, "SELECT count(*) FROM messages");
      assert.ok(kept > 0 && kept < total, `kept ${kept} of ${total}`);
      const { rows: failed } = await database.pool.query(
        "SELECT status, committed_bytes, error FROM imports",
      );
      assert.equal(failed[0].status, "failed");
      assert.ok(Number(failed[0].committed_bytes) > 0, "committed bytes recorded");
      assert.match(failed[0].error, /truncated/);

      const rerun = await importInto(database, { input: fixtures.irc, batchSize: 2000 });
      assert.equal(rerun.new, total - kept);
      assert.equal(rerun.unchanged, kept);
      assert.equal(await count(database, "SELECT count(*) FROM messages"), total);
      assert.equal(
        await count(database, "SELECT count(DISTINCT (chat_id, message_id)) FROM messages"),
        total,
      );
    });

    it("names the chat and message around invalid JSON and a wrong message shape", async () => {
      await reset();
      const text = fs.readFileSync(fixtures.cuda, "utf8");
      const broken = path.join(scratch, "broken.json");
      fs.writeFileSync(broken, text.replace('"id": 62,', '"id": 62,,'));
      await assert.rejects(importInto(database, { input: broken, owner: fixtureOwners.cuda }), (error) => {
        assert.ok(error instanceof ExportFormatError, String(error));
        assert.match(
          error.message,
          /^broken\.json: byte \d+, at messages\[30\], chat -1001479192468, after message 61: invalid JSON/,
        );
        // The offset is where message 62's object starts.
        const bytes = Buffer.from(text);
        assert.ok(
          error.offset > bytes.indexOf('"id": 61') && error.offset < bytes.indexOf('"id": 62'),
          "offset",
        );
        return true;
      });
      const wrong = path.join(scratch, "wrong.json");
      fs.writeFileSync(
        wrong,
        text.replace(
          '"id": 62,\n   "type": "message",',
          '"id": 62,\n   "type": "message", "reply_to_message_id": "yes",',
        ),
      );
      await assert.rejects(importInto(database, { input: wrong, owner: fixtureOwners.cuda }), (error) => {
        assert.ok(error instanceof ExportFormatError, String(error));
        assert.match(
          error.message,
          /chat -1001479192468, message 62: field "reply_to_message_id": expected an integer/,
        );
        return true;
      });
      const notExport = path.join(scratch, "array.json");
      fs.writeFileSync(notExport, "[1, 2, 3]");
      await assert.rejects(
        importInto(database, { input: notExport, owner: "1" }),
        /array\.json: byte 0.*expected an object/,
      );
    });

    it("takes the input it can repair and says where: a BOM, NUL escapes, invalid UTF-8, future dates", async () => {
      await reset();
      const now = Math.floor(Date.now() / 1000);
      const message = (id: number, text: string, unix = 1704103200) => ({
        id,
        type: "message",
        date: "2024-01-01T10:00:00",
        date_unixtime: String(unix),
        from: "Friend",
        from_id: id === 3 || id === 5 ? "user1" : "user2", // the owner wrote 3, and 5 "in the future"
        text,
      });
      const json = JSON.stringify(
        friendChat([
          message(1, "plain"),
          message(2, "nul\u0000inside\u0000twice"),
          message(3, "owner's last real words", 1704103300),
          message(4, "latin-1 here: XX"),
          message(5, "from the future", now + 400 * 86_400),
          message(6, "a backslash then u0000: \\u0000 stays text"),
        ]),
      );
      const body = Buffer.from(json, "utf8");
      const at = body.indexOf("XX");
      body[at] = 0xe9; // "é" in Latin-1: not UTF-8
      body[at + 1] = 0xff;
      const file = path.join(scratch, "repairs.json");
      fs.writeFileSync(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]));

      const summary = await importInto(database, { input: file, owner: "1" });
      assert.equal(summary.new, 6, "every message is stored");
      const stored = await database.pool.query<{ message_id: string; text: string }>(
        "SELECT message_id, text FROM messages ORDER BY message_id",
      );
      const text = (id: number) => stored.rows.find((r) => Number(r.message_id) === id)?.text;
      assert.equal(text(2), "nulinsidetwice", "the NULs are removed");
      assert.equal(text(6), "a backslash then u0000: \\u0000 stays text", "an escaped backslash is text");
      assert.equal(text(4), "latin-1 here: \uFFFD\uFFFD");
      const [nul, utf8, future] = summary.warnings;
      assert.match(nul ?? "", /^2 NUL character\(s\) removed .*first at byte \d+, chat 2, message 2$/);
      assert.match(
        utf8 ?? "",
        /^2 invalid UTF-8 sequence\(s\) read as U\+FFFD; first at byte \d+, chat 2, message 4$/,
      );
      assert.match(future ?? "", /^1 message\(s\) dated in the future, first chat 2, message 5/);
      const byteOfMessage2 = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]).indexOf('{"id":2');
      assert.match(
        nul ?? "",
        new RegExp(`byte ${byteOfMessage2},`),
        "the place is the message's byte offset in the file",
      );

      const since = await createHistoryRepository(database).monthsBeforeLastOwnMessage(1, 24);
      assert.equal(
        since,
        new Date(Date.UTC(2022, 0, 1, 10, 1, 40)).toISOString(),
        "24 months before the owner's latest message not in the future",
      );
    });

    it("refuses dates out of range and `{}` with their place, before storing anything", async () => {
      await reset();
      const file = path.join(scratch, "dates.json");
      fs.writeFileSync(
        file,
        JSON.stringify(
          friendChat([
            {
              id: 7,
              type: "message",
              date: "x",
              date_unixtime: "99999999999999",
              from_id: "user2",
              text: "t",
            },
          ]),
        ),
      );
      await assert.rejects(
        importInto(database, { input: file, owner: "1" }),
        /dates\.json: byte \d+.*chat 2, message 7: field "date_unixtime": "99999999999999" is not a date between 1970 and 9999/,
      );
      const empty = path.join(scratch, "empty.json");
      fs.writeFileSync(empty, "{}");
      await assert.rejects(importInto(database, { input: empty }), OwnerUnknownError);
      assert.equal(await count(database, "SELECT count(*) FROM messages"), 0);
    });

    it("takes a channel as the owner of its export (by id, -100 id or name) and refuses an owner it cannot find before a row is written", async () => {
      const file = path.join(scratch, "channel.json");
      const post = (id: number, text: string) => ({
        id,
        type: "message",
        date: "2024-03-01T10:00:00",
        date_unixtime: String(1709287200 + id * 60),
        from: "Daily Notes",
        from_id: "channel1500",
        text,
      });
      fs.writeFileSync(
        file,
        JSON.stringify({
          name: "Daily Notes",
          type: "public_channel",
          id: 1500,
          messages: [post(1, "first post"), post(2, "second post")],
        }),
      );
      const channel = -1_000_000_001_500;
      for (const owner of ["1500", "-1000000001500", "channel1500", "Daily Notes"]) {
        await reset();
        const summary = await importInto(database, { input: file, owner });
        assert.deepEqual(summary.owner, { id: channel, name: "Daily Notes" }, `--owner ${owner}`);
        assert.equal(summary.new, 2);
        assert.equal((await createHistoryRepository(database).getOwner())?.personId, channel);
      }

      const nothingStored = async () => {
        for (const table of ["messages", "chats", "people", "owner", "imports"])
          assert.equal(await count(database, `SELECT count(*) FROM ${table}`), 0, `no row in ${table}`);
      };
      for (const [owner, expected] of [
        [
          "Somebody Else",
          /--owner Somebody Else: nobody of that name wrote in channel\.json \(most active: Daily Notes \(channel -1000000001500\) 2 messages\)/,
        ],
        ["-1000000009999", /--owner -1000000009999: no channel of that id wrote in channel\.json/],
        ["channel9999", /no channel of that id/],
      ] as const) {
        await reset();
        await assert.rejects(importInto(database, { input: file, owner }), expected);
        await nothingStored();
      }
      // Two senders of one name: ambiguous, named both, before a row is written.
      await reset();
      const twins = path.join(scratch, "twins.json");
      fs.writeFileSync(
        twins,
        JSON.stringify(
          friendChat([
            { ...post(1, "a"), from: "Sam", from_id: "user2" },
            { ...post(2, "b"), from: "Sam", from_id: "user3" },
          ]),
        ),
      );
      await assert.rejects(
        importInto(database, { input: twins, owner: "Sam" }),
        /ambiguous.*Sam \(2\) or Sam \(3\)/,
      );
      await nothingStored();
      // A user who only read is still an owner (the other side of a personal chat), with a warning.
      const reader = await importInto(database, { input: twins, owner: "1" });
      assert.equal(reader.owner.id, 1);
      assert.match(reader.warnings.join("\n"), /the owner \(1\) wrote nothing in twins\.json/);
    });

    it("an import stopped by its signal keeps every committed batch, is marked interrupted, and the same import resumes it", async () => {
      await reset();
      const total = expectationsOf(fixtures.irc).messages.size;
      const stop = new AbortController();
      await assert.rejects(
        importInto(database, {
          input: fixtures.irc,
          batchSize: 2000,
          signal: stop.signal,
          onProgress: ({ bytes, totalBytes }) => {
            if (bytes > totalBytes / 2) stop.abort();
          },
        }),
        /import of ubuntu_irc_as_telegram_export\.json stopped; what was committed stays: import the same file again to resume/,
      );
      const { rows: stopped } = await database.pool.query("SELECT status, error FROM imports");
      assert.equal(stopped[0].status, "interrupted");
      const kept = await count(database, "SELECT count(*) FROM messages");
      assert.ok(kept > 0 && kept < total, `kept ${kept} of ${total}`);
      const again = await importInto(database, { input: fixtures.irc, batchSize: 2000 });
      assert.equal(again.new, total - kept);
      assert.equal(await count(database, "SELECT count(*) FROM messages"), total);
    });
  });
}
