import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Message, User } from "grammy/types";
import { createRepositories } from "../src/app.ts";
import { createTwinBot, type TwinBot } from "../src/bot/bot.ts";
import { createLog } from "../src/bot/log.ts";
import { createServing } from "../src/cli/engine-setup.ts";
import type { Config } from "../src/config/config.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine } from "../src/inference/engine.ts";
import { promptText } from "../src/inference/prompt.ts";
import { BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";

/**
 * Friends' live forwards, replies and polls reach the model with the dataset's markers
 * (src/dataset/markers.ts), asserted on the prompt the model was actually given: the same lines the
 * twin was trained on. The conversation before the live burst is stored directly, so what the
 * replies point at does not depend on what the untuned test model says.
 */
const TOKEN = "123456789:AAE-markers_test_token_local_api_00";
const OWNER_NAME = "Alexander Smirnov";
const owner: User = { id: 7001, is_bot: false, first_name: "Alexander" };
const fay: User = { id: 7002, is_bot: false, first_name: "Fay" };
const QUIET_MS = 300;
/** Telegram ids of the twin's two earlier messages (the local server numbers its own from 1000). */
const OLDER = 50_001;
const LATEST = 50_002;

describe("live forwards, replies and polls in the prompt", { timeout: 300_000 }, () => {
  const server = new BotApiServer(TOKEN);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bot-markers-test-"));
  const prompts: string[] = [];
  let database: TestDatabase;
  let engine: Engine;
  let twin: TwinBot;

  before(async () => {
    await server.start();
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    const repositories = createRepositories(database);
    await repositories.history.setOwner(owner.id, OWNER_NAME, "UTC");
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 2048,
      sequences: 1,
      threads: 2,
      sampling: { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
      maxReplyTokens: 8,
    });
    const config: Config = {
      ...database.config,
      dataDir: tmp,
      inference: { ...database.config.inference, contextSize: 2048, maxReplyTokens: 8 },
      bot: {
        token: TOKEN,
        ownerId: owner.id,
        apiRoot: server.apiRoot,
        webhook: undefined,
        groups: [],
        rateLimitPerMinute: 20,
        quietMs: QUIET_MS,
        typing: { msPerChar: 0, maxMs: 0 },
        progressEditMs: 50,
      },
    };
    const conversations = new Conversations(engine);
    const reply = conversations.reply.bind(conversations);
    conversations.reply = (key, prompt, ...rest) => {
      prompts.push(promptText(prompt.pieces));
      return reply(key, prompt, ...rest);
    };
    twin = await createTwinBot({
      config,
      database,
      conversations,
      countTokens: engine.countTokens,
      model: createServing({ config, repositories }, engine),
      log: createLog([TOKEN], () => undefined),
    });
    await twin.start();
  });
  after(async () => {
    await twin?.stop();
    await engine?.dispose();
    await server.close();
    await database?.close();
    await stopEmbedded();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("shows a forward's author, quotes a reply to an older twin message, leaves a reply to the previous turn bare, and writes a poll out", async () => {
    const { friends, messages } = twin.services;
    await friends.allow(fay.id);
    await friends.introduce(fay.id); // introduced before: no introduction in the way
    // Two earlier exchanges, the twin's messages sent as OLDER and LATEST.
    const ref = { personId: fay.id, mode: "friend" as const };
    let update = 900_000;
    for (const [asked, said, telegramId] of [
      ["hi", "an older message from the twin", OLDER],
      ["and now?", "the latest twin message", LATEST],
    ] as const) {
      const id = (await messages.addIncoming(ref, asked, ++update)) as number;
      const [reply] = await messages.storeReply(ref, id, [said], "base");
      await messages.markSent(reply as number, telegramId);
    }
    const twinSaid = (message_id: number, text: string) =>
      ({
        message_id,
        date: Math.floor(Date.now() / 1000),
        chat: { id: fay.id, type: "private", first_name: fay.first_name },
        from: server.bot,
        text,
      }) as Message["reply_to_message"];

    server.sendMessage(fay, {
      text: "the forwarded text",
      forward_origin: {
        type: "user",
        date: 0,
        sender_user: { id: 7003, is_bot: false, first_name: "Zoe", last_name: "Quinn" },
      },
    });
    server.sendMessage(fay, {
      text: "about that old one",
      reply_to_message: twinSaid(OLDER, "an older message from the twin"),
    });
    server.sendMessage(fay, {
      text: "sure, agreed",
      reply_to_message: twinSaid(LATEST, "the latest twin message"),
    });
    server.sendMessage(fay, {
      poll: {
        id: "poll-1",
        question: "Pizza tonight?",
        options: [
          { persistent_id: "1", text: "yes", voter_count: 0 },
          { persistent_id: "2", text: "no", voter_count: 0 },
        ],
        total_voter_count: 0,
        is_closed: false,
        is_anonymous: false,
        type: "regular",
        allows_multiple_answers: false,
      } as Message["poll"],
    });
    await server.waitFor("the twin answering", () => prompts.length > 0);
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS + 100));
    await twin.services.replier.idle();

    assert.equal(prompts.length, 1, "the burst is answered once");
    const prompt = prompts[0] as string;
    assert.ok(
      prompt.includes(
        [
          "<|im_start|>Fay",
          ">>> [forwarded from Zoe Quinn]",
          ">>> the forwarded text",
          `>>> [reply to ${OWNER_NAME}: "an older message from the twin"]`,
          ">>> about that old one",
          ">>> sure, agreed",
          ">>> [poll] Pizza tonight? — yes / no<|im_end|>",
        ].join("\n"),
      ),
      `the friend's turn, markers included, in the prompt:\n${prompt}`,
    );
    assert.ok(
      prompt.includes(`<|im_start|>${OWNER_NAME}\n>>> the latest twin message<|im_end|>\n<|im_start|>Fay\n`),
      `the reply without a marker answers the turn right before it:\n${prompt}`,
    );
    assert.doesNotMatch(
      prompt,
      /\[reply to [^\]]*the latest twin message/,
      "no marker for the previous turn",
    );
    const { rows } = await database.pool.query<{ text: string; marker: string | null }>(
      "SELECT text, marker FROM bot_messages WHERE person_id = $1 AND NOT from_twin AND update_id < 900000 ORDER BY id",
      [fay.id],
    );
    assert.deepEqual(rows, [
      { text: "the forwarded text", marker: "[forwarded from Zoe Quinn]" },
      { text: "about that old one", marker: `[reply to ${OWNER_NAME}: "an older message from the twin"]` },
      { text: "sure, agreed", marker: null },
      { text: "[poll] Pizza tonight? — yes / no", marker: null },
    ]);
  });
});
