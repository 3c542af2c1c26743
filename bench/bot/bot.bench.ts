/**
 * bench/bot — 20 friends writing to the twin at once, through the real bot (grammY runner,
 * PostgreSQL, SmolLM2) and a local Bot API server feeding the updates.
 *
 * Each friend sends a burst of 3 messages at the same moment. Printed: time from a friend's last
 * message to the twin's first message (median and worst), against one friend alone measured in
 * the same run; and the checks that every message got its answer, none was lost and none was
 * answered twice.
 *
 *   npm run bench:bot [-- <friends>]        (default 20)
 */

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { User } from "grammy/types";
import { createFriendsRepository } from "../../src/access/friends.repository.ts";
import { createRepositories } from "../../src/app.ts";
import { createTwinBot } from "../../src/bot/bot.ts";
import { createBotMessagesRepository } from "../../src/bot/bot-messages.repository.ts";
import { createLog } from "../../src/bot/log.ts";
import { texts } from "../../src/bot/texts.ts";
import { createServing } from "../../src/cli/engine-setup.ts";
import { loadConfig } from "../../src/config/config.ts";
import { openDatabase } from "../../src/db/client.ts";
import { importDesktopExport } from "../../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../../src/history/history.repository.ts";
import { Conversations } from "../../src/inference/conversations.ts";
import { chooseThreads, Engine } from "../../src/inference/engine.ts";
import { BotApiServer } from "../../test/support/bot-api-server.ts";
import { writePersonalChatExport } from "../../test/support/personal-chat-export.ts";

const FRIENDS = Number(process.argv[2] ?? 20);
const BURST = 3;
const TOKEN = "123456789:AAE-bench_token_for_the_local_bot_api_012";
const owner = { id: 121569222, name: "Hamid Khorshidian" };
const users: User[] = Array.from({ length: FRIENDS + 1 }, (_, i) => ({
  id: 6000 + i,
  is_bot: false,
  first_name: `Friend${i}`,
}));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bot-bench-"));
fs.chmodSync(dir, 0o755);
const server = new BotApiServer(TOKEN);
await server.start();
const base = loadConfig({ TWIN_DATA_DIR: dir, TWIN_TZ: "UTC", TWIN_MAX_REPLY_TOKENS: "32" });
const database = await openDatabase(base);
const exportFile = writePersonalChatExport(
  dir,
  owner,
  users.map((u) => ({ id: u.id, name: `${u.first_name} Example` })),
);
await importDesktopExport(
  { historyRepository: createHistoryRepository(database) },
  { input: exportFile, batchSize: 10_000, timeZone: "UTC" },
);
for (const user of users) await createFriendsRepository(database).allow(user.id);

const threads = chooseThreads(0, os.availableParallelism());
const engine = await Engine.open({
  modelPath: execFileSync("node", [path.resolve(import.meta.dirname, "../../scripts/test-model.mjs")], {
    encoding: "utf8",
  }).trim(),
  contextSize: base.inference.contextSize,
  sequences: base.inference.sequences,
  threads,
  sampling: base.inference.sampling,
  maxReplyTokens: base.inference.maxReplyTokens,
});
let modelCalls = 0;
const conversations = new Conversations(engine);
const reply = conversations.reply.bind(conversations);
conversations.reply = (...args) => {
  modelCalls++;
  return reply(...args);
};
const quietMs = 1000;
const config = {
  ...base,
  bot: {
    ...base.bot,
    token: TOKEN,
    ownerId: owner.id,
    apiRoot: server.apiRoot,
    rateLimitPerMinute: 60,
    quietMs,
    typing: { msPerChar: 0, maxMs: 0 },
  },
};
const errors: string[] = [];
const twin = await createTwinBot({
  config,
  database,
  conversations,
  countTokens: engine.countTokens,
  model: createServing({ config, repositories: createRepositories(database) }, engine),
  log: { ...createLog([TOKEN]), error: (scope, error) => errors.push(`${scope}: ${String(error)}\n`) },
});
await twin.start();

const intro = texts.intro(owner.name);
/** Milliseconds from each friend's last message to the twin's first message (not the AI notice). */
async function burst(friends: User[]): Promise<number[]> {
  const sentAt = new Map<number, number>();
  for (const friend of friends) {
    for (let i = 0; i < BURST; i++) server.sendMessage(friend, { text: `hey, message ${i + 1} of ${BURST}` });
    sentAt.set(friend.id, Date.now());
  }
  const firstReply = (friend: User) =>
    server.sent("sendMessage", friend.id).find((call) => call.params.text !== intro)?.at;
  await server.waitFor(
    "every friend's first reply",
    () => friends.every((f) => firstReply(f) !== undefined),
    600_000,
  );
  await new Promise((resolve) => setTimeout(resolve, 200));
  await twin.services.replier.idle();
  return friends.map((f) => (firstReply(f) as number) - (sentAt.get(f.id) as number));
}

const alone = (await burst(users.slice(0, 1)))[0] as number;
const callsBefore = modelCalls;
const times = await burst(users.slice(1));
const group = users.slice(1);

// Checks: every message answered, each reply sent exactly once, one model call per burst.
const messages = createBotMessagesRepository(database);
let unanswered = 0;
let duplicates = 0;
let unsent = 0;
for (const friend of group) {
  const ref = { personId: friend.id, mode: "friend" as const };
  unanswered += (await messages.pending(ref)).length;
  unsent += (await messages.unsent(ref)).length;
  const stored = (await messages.recent(ref, 100)).filter((m) => m.fromTwin).map((m) => m.text);
  const sent = server
    .sent("sendMessage", friend.id)
    .map((c) => String(c.params.text))
    .filter((t) => t !== intro);
  if (sent.length !== stored.length) duplicates += Math.abs(sent.length - stored.length);
}
const sorted = [...times].sort((a, b) => a - b);
const median =
  ((sorted[Math.floor((sorted.length - 1) / 2)] as number) +
    (sorted[Math.ceil((sorted.length - 1) / 2)] as number)) /
  2;
const worst = sorted.at(-1) as number;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
process.stdout.write(
  `bot: ${FRIENDS} friends × ${BURST} messages at once, SmolLM2-135M Q4_1, ${threads} threads, ` +
    `${config.inference.sequences} sequences, quiet period ${s(quietMs)}, ${config.inference.maxReplyTokens}-token replies\n`,
);
process.stdout.write(`time to first reply, one friend alone: ${s(alone)}\n`);
process.stdout.write(
  `time to first reply, ${FRIENDS} at once: median ${s(median)} (${(median / alone).toFixed(2)}x alone), worst ${s(worst)} (${(worst / alone).toFixed(2)}x)\n`,
);
process.stdout.write(
  `model calls for ${FRIENDS} bursts: ${modelCalls - callsBefore}; unanswered messages: ${unanswered}; ` +
    `stored but unsent replies: ${unsent}; replies sent more or less often than stored: ${duplicates}; errors logged: ${errors.length}\n`,
);
for (const line of errors) process.stdout.write(`  logged: ${line}`);
await twin.stop();
await engine.dispose();
await server.close();
await database.close();
fs.rmSync(dir, { recursive: true, force: true });
if (unanswered + unsent + duplicates > 0 || modelCalls - callsBefore !== FRIENDS) process.exitCode = 1;
