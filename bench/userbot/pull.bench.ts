/**
 * bench/userbot — a scripted account of 50 personal chats and 200,000 messages (real gramjs `Api`
 * objects), pulled into PostgreSQL through the userbot's pull, interrupted twice and resumed.
 * Checks zero duplicates and zero gaps, then imports the same history as a desktop export into a
 * second database and compares the two sources' rows field by field. Prints messages/s of the
 * pull against the desktop import of the same messages, measured in the same run.
 *
 *   npm run bench:userbot [-- <chats> <messages per chat>]      (default 50 × 4000)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig } from "../../src/config/config.ts";
import { openDatabase } from "../../src/db/client.ts";
import { importDesktopExport } from "../../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../../src/history/history.repository.ts";
import { pullCursorReader } from "../../src/userbot/cursors.ts";
import { pullHistory } from "../../src/userbot/pull.ts";
import { ScriptedAccount } from "../../test/support/scripted-account.ts";

const CHATS = Number(process.argv[2] ?? 50);
const PER_CHAT = Number(process.argv[3] ?? 4000);
const TOTAL = CHATS * PER_CHAT;

const account = new ScriptedAccount();
const chats = Array.from({ length: CHATS }, (_, i) =>
  account.personalChat(account.addUser(10_000 + i, `Friend${i}`, { lastName: "Example" }), PER_CHAT),
);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-userbot-bench-"));
fs.chmodSync(dir, 0o755);
const open = (name: string) =>
  openDatabase(loadConfig({ TWIN_DATA_DIR: path.join(dir, name), TWIN_TZ: "UTC" }));
const live = await open("live");
const pullOnce = () =>
  pullHistory(
    account,
    { historyRepository: createHistoryRepository(live), cursors: pullCursorReader(live.db) },
    { ownerId: Number(account.owner.id), pageSize: 100, sleep: async () => undefined },
  );

// Pull, interrupted twice (a dropped connection at a third and at two thirds of the requests).
const requestsPerPull = 1 + CHATS * (Math.ceil(PER_CHAT / 100) + 1);
let interruptions = 0;
const started = performance.now();
account.crashAfter = Math.floor(requestsPerPull / 3);
for (;;) {
  try {
    await pullOnce();
    break;
  } catch (error) {
    if (!/scripted crash/.test((error as Error).message)) throw error;
    interruptions++;
    if (interruptions === 1) account.crashAfter = account.requests + Math.floor(requestsPerPull / 3);
  }
}
const pullSeconds = (performance.now() - started) / 1000;

// Every message written once: what the three runs (two cut short) stored adds up to the total.
const runs = await live.pool.query<{ pulled: number }>(
  "SELECT coalesce(sum((counts->>'messages')::int), 0)::int AS pulled FROM imports WHERE source = 'userbot'",
);
const pulledTwice = (runs.rows[0]?.pulled ?? 0) - TOTAL;
const perChat = await live.pool.query<{ chat_id: string; n: number; lo: string; hi: string }>(
  "SELECT chat_id, count(*)::int AS n, min(message_id) AS lo, max(message_id) AS hi FROM messages GROUP BY chat_id",
);
const stored = perChat.rows.reduce((sum, row) => sum + row.n, 0);
const gaps = perChat.rows.reduce((sum, row) => sum + (Number(row.hi) - Number(row.lo) + 1 - row.n), 0);
const incomplete = perChat.rows.filter((row) => row.n !== PER_CHAT).length + (CHATS - perChat.rows.length);

// The same history as a desktop export, imported into its own database.
const file = path.join(dir, "result.json");
fs.writeFileSync(file, JSON.stringify(account.exportOf(chats)));
const imported = await open("imported");
const importStarted = performance.now();
await importDesktopExport(
  { historyRepository: createHistoryRepository(imported) },
  { input: file, batchSize: 25_000, timeZone: "UTC" },
);
const importSeconds = (performance.now() - importStarted) / 1000;

// Field by field, every column but where the row came from.
const columns = `chat_id, message_id, sender_id, sender_name, sent_at, edited_at, kind, text, emoji,
  reply_to_message_id, forwarded_from_name, forwarded_from_id, via_bot, action`;
const read = async (database: typeof live) =>
  (await database.pool.query(`SELECT ${columns} FROM messages ORDER BY chat_id, message_id`)).rows;
const [fromLive, fromFile] = await Promise.all([read(live), read(imported)]);
let differing = 0;
for (let i = 0; i < Math.max(fromLive.length, fromFile.length); i++) {
  if (JSON.stringify(fromLive[i]) !== JSON.stringify(fromFile[i])) differing++;
}

const rate = (n: number, s: number) => Math.round(n / s).toLocaleString("en-US");
process.stdout.write(
  `userbot pull: ${CHATS} chats × ${PER_CHAT} = ${TOTAL.toLocaleString("en-US")} messages, ${interruptions} interruptions\n`,
);
process.stdout.write(
  `pull ${pullSeconds.toFixed(1)} s (${rate(TOTAL, pullSeconds)} messages/s, ${account.requests} requests) vs desktop import of the same ` +
    `${importSeconds.toFixed(1)} s (${rate(TOTAL, importSeconds)} messages/s): ${(importSeconds / pullSeconds).toFixed(2)}x the import's speed\n`,
);
process.stdout.write(
  `stored ${stored.toLocaleString("en-US")}; written twice ${pulledTwice}; gaps ${gaps}; incomplete chats ${incomplete}\n`,
);
process.stdout.write(
  `rows compared field by field with the desktop import: ${fromFile.length.toLocaleString("en-US")}, differing ${differing}\n`,
);
await live.close();
await imported.close();
fs.rmSync(dir, { recursive: true, force: true });
if (gaps > 0 || incomplete > 0 || stored !== TOTAL || differing > 0 || interruptions !== 2)
  process.exitCode = 1;
