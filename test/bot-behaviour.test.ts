import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Message, User } from "grammy/types";
import { createRepositories } from "../src/app.ts";
import { createTwinBot, type TwinBot } from "../src/bot/bot.ts";
import { createLog } from "../src/bot/log.ts";
import { texts } from "../src/bot/texts.ts";
import { createServing } from "../src/cli/engine-setup.ts";
import type { Config } from "../src/config/config.ts";
import { SESSION_GAP_MINUTES } from "../src/dataset/sessions.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine } from "../src/inference/engine.ts";
import { type ApiCall, BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtureOwners, fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";

/**
 * What a scripted owner and scripted friends meet, against the local Bot API server: the rate
 * limit keeps every message, every button press is answered once, friends hear the introduction
 * once and get no model time for commands, the pickers on a group-only history (the IRC fixture),
 * code in texts as entities, and a start-up profile whose steps do not depend on each other.
 */
const TOKEN = "123456789:AAE-behaviour_test_token_local_api_0";
const owner: User = { id: Number(fixtureOwners.irc), is_bot: false, first_name: "ActionParsnip" };
const fay: User = { id: 6001, is_bot: false, first_name: "Fay" };
const gus: User = { id: 6002, is_bot: false, first_name: "Gus" };
const hal: User = { id: 6003, is_bot: false, first_name: "Hal" };
const ivo: User = { id: 6004, is_bot: false, first_name: "Ivo" };
const QUIET_MS = 300;
const LIMIT = 3;

describe("the bot with a scripted owner and friends, against a local Bot API server", {
  timeout: 600_000,
}, () => {
  const server = new BotApiServer(TOKEN);
  const logLines: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bot-behaviour-test-"));
  let database: TestDatabase;
  let engine: Engine;
  let config: Config;
  let twin: TwinBot;
  let modelCalls = 0;

  const startTwin = async (rateWindowMs = 2_000) => {
    const conversations = new Conversations(engine);
    const reply = conversations.reply.bind(conversations);
    conversations.reply = (...args) => {
      modelCalls++;
      return reply(...args);
    };
    twin = await createTwinBot({
      config,
      database,
      conversations,
      countTokens: engine.countTokens,
      model: createServing({ config, repositories: createRepositories(database) }, engine),
      log: createLog([TOKEN], (line) => logLines.push(line)),
      rateWindowMs,
    });
    await twin.start();
  };
  const texted = (chatId: number) =>
    server.sent("sendMessage", chatId).map((call) => String(call.params.text));
  /** Sends `text` as the owner and waits for the bot's next message to the owner. */
  const ownerSays = async (text: string): Promise<ApiCall & { result?: Message }> => {
    const before = server.sent("sendMessage", owner.id).length;
    server.sendMessage(owner, { text });
    await server.waitFor(`the answer to ${text}`, () => server.sent("sendMessage", owner.id).length > before);
    return server.sent("sendMessage", owner.id)[before] as ApiCall & { result?: Message };
  };
  const settled = async () => {
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS + 100));
    await twin.services.replier.idle();
  };
  const privateMessage = (user: User) =>
    ({
      message_id: 1,
      date: 0,
      chat: { id: user.id, type: "private", first_name: user.first_name },
    }) as never;
  /** Every row of a keyboard holds a button, and there is at least one. */
  const assertFullRows = (call: ApiCall, what: string) => {
    const rows = call.params.reply_markup?.inline_keyboard as unknown[][] | undefined;
    assert.ok(rows && rows.length > 0, `${what}: a keyboard with buttons (${JSON.stringify(rows)})`);
    for (const row of rows) assert.ok(row.length > 0, `${what}: no empty row (${JSON.stringify(rows)})`);
  };
  const incoming = async (personId: number) =>
    (
      await database.pool.query<{ text: string; answered: boolean; skipped: boolean }>(
        `SELECT text, answered_at IS NOT NULL AS answered, coalesce((to_jsonb(b) ->> 'skipped')::boolean, false) AS skipped
         FROM bot_messages b WHERE person_id = $1 AND NOT from_twin ORDER BY sent_at, update_id`,
        [personId],
      )
    ).rows;

  before(async () => {
    await server.start();
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 2048,
      sequences: 4,
      threads: 2,
      sampling: { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
      maxReplyTokens: 16,
    });
    config = {
      ...database.config,
      dataDir: tmp,
      bot: {
        token: TOKEN,
        ownerId: owner.id,
        apiRoot: server.apiRoot,
        webhook: undefined,
        groups: [],
        rateLimitPerMinute: LIMIT,
        quietMs: QUIET_MS,
        typing: { msPerChar: 0, maxMs: 0 },
        progressEditMs: 50,
      },
    };
    await startTwin();
  });
  after(async () => {
    await twin?.stop();
    await engine?.dispose();
    await server.close();
    await database?.close();
    await stopEmbedded();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("sets commands, name, description and short description as independent steps: one failure, one log line", async () => {
    await twin.stop();
    const from = server.calls.length;
    const logFrom = logLines.length;
    server.fail("getMyName", 400);
    server.fail("setMyCommands", 400);
    await startTwin();
    const calls = server.calls.slice(from);
    const ok = (method: string) => calls.filter((call) => call.method === method && !call.failed);
    assert.equal(ok("setMyName").length, 1, "the name is set although getMyName failed");
    assert.match(String(ok("setMyDescription")[0]?.params.description), /This is an AI twin of/);
    assert.match(String(ok("setMyShortDescription")[0]?.params.short_description), /AI twin of/);
    assert.equal(ok("deleteMyCommands").length, 1, "the default scope's commands are still cleared");
    const logged = logLines.slice(logFrom).filter((line) => line.includes("profile"));
    assert.equal(logged.filter((line) => line.includes("getMyName")).length, 1, logged.join(""));
    assert.equal(logged.filter((line) => line.includes("setMyCommands")).length, 1, logged.join(""));
    assert.equal(logged.length, 2, `no other step failed: ${logged.join("")}`);
  });

  it("offers no empty keyboard and asks for an import only while there is no history", async () => {
    assert.equal(
      (await ownerSays("/talk")).params.text,
      "Nobody to talk to yet: /import your history first.",
    );
    const allow = await ownerSays("/allow");
    assert.equal(allow.params.reply_markup, undefined, "no keyboard without anyone to offer");
    assert.match(String(allow.params.text), /Forward me a message/);
    assert.match(String((await ownerSays("/revoke")).params.text), /Nobody is allowed yet/);

    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: fixtures.irc, batchSize: 5000, timeZone: "UTC" },
    );
    const talk = await ownerSays("/talk");
    assert.equal(
      talk.params.text,
      "Who do you want to talk to?",
      "a group-only history has people to talk to",
    );
    assertFullRows(talk, "/talk");
    const offered = talk.params.reply_markup.inline_keyboard.flat() as {
      text: string;
      callback_data: string;
    }[];
    assert.ok(offered.length >= 3, "several people from the group sessions");
    assert.ok(
      offered.every((button) => /^talk:\d+$/.test(button.callback_data)),
      JSON.stringify(offered),
    );
    const allowPicker = await ownerSays("/allow");
    assertFullRows(allowPicker, "/allow");
    const named = await ownerSays("/talk ubu"); // part of a name: a picker of the matches
    assertFullRows(named, "/talk <part of a name>");

    for (const friend of [fay, gus, hal]) await ownerSays(`/allow ${friend.id}`);
    const revoke = await ownerSays("/revoke");
    assertFullRows(revoke, "/revoke");
    assert.equal(revoke.params.reply_markup.inline_keyboard.length, 3, "one row per allowed friend");

    // Everyone the pickers could offer is allowed, then opted out: no keyboard, and no call to import.
    const everyone = (
      await twin.services.history.conversationPartners({ limit: 100_000, gapMinutes: SESSION_GAP_MINUTES })
    ).map((person) => person.id);
    await database.pool.query(
      "INSERT INTO friends (person_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING",
      [everyone],
    );
    const allowNone = await ownerSays("/allow");
    assert.equal(allowNone.params.reply_markup, undefined, JSON.stringify(allowNone.params));
    assert.match(String(allowNone.params.text), /allowed already/);
    await database.pool.query("INSERT INTO opt_outs (person_id) SELECT unnest($1::bigint[])", [everyone]);
    const talkNone = await ownerSays("/talk");
    assert.equal(talkNone.params.reply_markup, undefined);
    assert.doesNotMatch(String(talkNone.params.text), /import your history first/);
    await database.pool.query("DELETE FROM friends WHERE person_id = ANY($1::bigint[])", [everyone]);
    await database.pool.query("DELETE FROM opt_outs WHERE person_id = ANY($1::bigint[])", [everyone]);
  });

  it("introduces itself to a friend once, until the owner resets them; commands cost no model time", async () => {
    await twin.services.friends.allow(fay.id);
    const intro = texts.intro(await twin.services.ownerName());
    const before = modelCalls;
    server.sendMessage(fay, { text: "/start" });
    await server.waitFor("the introduction", () => texted(fay.id).includes(intro));
    server.sendMessage(fay, { text: "hi, is this you?" });
    await server.waitFor("the twin typing", () => server.sent("sendChatAction", fay.id).length > 0);
    await settled();
    assert.equal(texted(fay.id).filter((t) => t === intro).length, 1, "one introduction");
    assert.equal(modelCalls - before, 1, "the message was answered");

    const calls = modelCalls;
    const sent = texted(fay.id).length;
    for (const command of ["/forget", "/foo bar", "/start", "/help", "/cancel", "/talk@twin_test_bot Anna"])
      server.sendMessage(fay, { text: command });
    await server.waitFor("six answers", () => texted(fay.id).length >= sent + 6);
    await settled();
    const answers = texted(fay.id).slice(sent);
    assert.equal(answers.length, 6, JSON.stringify(answers));
    for (const answer of answers) {
      assert.notEqual(answer, intro, "no second introduction");
      assert.match(answer, /\/optout/, "a line of what friends can do");
      assert.match(answer, /\/guess/);
    }
    assert.equal(modelCalls, calls, "no model time for commands");
    assert.deepEqual(
      (await incoming(fay.id)).map((m) => m.text),
      ["hi, is this you?"],
      "commands are not chat text",
    );

    // The owner resets her with /forget: the next message is introduced again.
    const question = await ownerSays(`/forget ${fay.id}`);
    assert.match(String(question.params.text), /^Delete/);
    server.pressButton(owner, "forget:yes", server.messageById(question.result?.message_id ?? 0) as never);
    await server.waitFor("the deletion", () =>
      server.sent("editMessageText", owner.id).some((c) => String(c.params.text).startsWith("Deleted")),
    );
    const sentBefore = texted(fay.id).length;
    server.sendMessage(fay, { text: "/start" });
    await server.waitFor("the introduction again", () => texted(fay.id).length > sentBefore);
    assert.equal(texted(fay.id).at(-1), intro);

    // So does allowing her again after a /revoke; allowing her while she is allowed does not.
    await twin.services.friends.allow(fay.id);
    assert.equal(await twin.services.friends.introduce(fay.id), false, "still introduced");
    await twin.services.friends.revoke(fay.id);
    await twin.services.friends.allow(fay.id);
    assert.equal(await twin.services.friends.introduce(fay.id), true, "introduced anew");
  });

  it("answers every button press exactly once, stale or unauthorised ones with a short notice", async () => {
    await twin.services.friends.allow(fay.id);
    const before = server.calls.length;
    const presses = [
      { by: owner, data: "talk:notanumber" },
      { by: owner, data: "¯\\_(ツ)_/¯" },
      { by: owner, data: "forget:yes" }, // no confirmation waits for it any more
      { by: owner, data: "job:cancel:999" }, // its handler answers: "already finished"
      { by: owner, data: `allow:${ivo.id}` }, // a real press: its handler answers
      { by: fay, data: `allow:${ivo.id}` },
      { by: fay, data: "train:go:1" },
      { by: ivo, data: `revoke:${fay.id}` },
    ].map(({ by, data }) => ({
      data,
      id: server.pressButton(by, data, privateMessage(by)).callback_query?.id,
    }));
    await server.waitFor("every press answered", () =>
      presses.every(({ id }) =>
        server.sent("answerCallbackQuery").some((c) => c.params.callback_query_id === id),
      ),
    );
    await settled();
    const answers = server.calls.slice(before).filter((c) => c.method === "answerCallbackQuery");
    for (const { data, id } of presses) {
      const mine = answers.filter((c) => c.params.callback_query_id === id);
      assert.equal(mine.length, 1, `one answer for ${data}: ${JSON.stringify(mine.map((c) => c.params))}`);
    }
    const notice = (data: string) =>
      answers.find((c) => c.params.callback_query_id === presses.find((p) => p.data === data)?.id)?.params
        .text;
    for (const data of ["talk:notanumber", "¯\\_(ツ)_/¯", "forget:yes", `revoke:${fay.id}`, "train:go:1"])
      assert.match(String(notice(data)), /no longer valid/, `the notice for ${data}`);
    assert.equal(await twin.services.friends.isAllowed(fay.id), true, "the stranger revoked no one");
    assert.equal(await twin.services.friends.isAllowed(ivo.id), true, "the owner's press worked");
    await twin.services.friends.revoke(ivo.id);

    // While /import waits for a file, its conversation takes every update: a press too.
    await ownerSays("/import");
    const waiting = server.pressButton(owner, `talk:${fay.id}`, privateMessage(owner)).callback_query?.id;
    await server.waitFor("the press answered", () =>
      server.sent("answerCallbackQuery").some((c) => c.params.callback_query_id === waiting),
    );
    await ownerSays("/cancel");
    assert.equal(
      server.sent("answerCallbackQuery").filter((c) => c.params.callback_query_id === waiting).length,
      1,
    );
  });

  it("keeps every message over the rate limit and answers it in later rounds, with one note", async () => {
    await twin.services.friends.allow(gus.id);
    const before = modelCalls;
    for (let i = 1; i <= 2 * LIMIT; i++) server.sendMessage(gus, { text: `message ${i}` });
    await server.waitFor("the note", () => texted(gus.id).includes(texts.rateLimited));
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const rows = await incoming(gus.id);
      if (rows.length === 2 * LIMIT && rows.every((m) => m.answered)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await settled();
    const rows = await incoming(gus.id);
    assert.deepEqual(
      rows.map((m) => m.text),
      Array.from({ length: 2 * LIMIT }, (_, i) => `message ${i + 1}`),
      "every message stored, in order",
    );
    assert.ok(
      rows.every((m) => m.answered && !m.skipped),
      JSON.stringify(rows),
    );
    assert.deepEqual(
      (await twin.services.messages.recent({ personId: gus.id, mode: "friend" }, 50))
        .filter((m) => !m.fromTwin)
        .map((m) => m.text),
      rows.map((m) => m.text),
      "the conversation as the twin saw it keeps their order",
    );
    assert.ok(modelCalls - before >= 2, `answered in more than one round (${modelCalls - before})`);
    assert.equal(texted(gus.id).filter((t) => t === texts.rateLimited).length, 1, "one note for the burst");

    // A second burst, and the bot stops while its last messages are held: the restart answers them.
    await twin.stop();
    await startTwin(60_000);
    for (let i = 2 * LIMIT + 1; i <= 4 * LIMIT; i++) server.sendMessage(gus, { text: `message ${i}` });
    await server.waitFor(
      "the second note",
      () => texted(gus.id).filter((t) => t === texts.rateLimited).length > 1,
    );
    const stored = Date.now() + 60_000;
    while ((await incoming(gus.id)).length < 4 * LIMIT && Date.now() < stored)
      await new Promise((resolve) => setTimeout(resolve, 50));
    await twin.stop();
    const held = (await incoming(gus.id)).filter((m) => !m.answered);
    assert.ok(held.length >= LIMIT, `messages wait over the restart: ${JSON.stringify(held)}`);
    await startTwin();
    const restarted = Date.now() + 120_000;
    while (!(await incoming(gus.id)).every((m) => m.answered) && Date.now() < restarted)
      await new Promise((resolve) => setTimeout(resolve, 100));
    await settled();
    const all = await incoming(gus.id);
    assert.ok(
      all.every((m) => m.answered && !m.skipped),
      `answered after the restart: ${JSON.stringify(all)}`,
    );
    assert.deepEqual(
      (await twin.services.messages.recent({ personId: gus.id, mode: "friend" }, 50))
        .filter((m) => !m.fromTwin)
        .map((m) => m.text),
      Array.from({ length: 4 * LIMIT }, (_, i) => `message ${i + 1}`),
    );
    assert.equal(texted(gus.id).filter((t) => t === texts.rateLimited).length, 2, "one note per burst");
  });

  it("keeps at most 200 unanswered messages a person; later ones are stored, skipped, with one note", async () => {
    await twin.stop();
    await startTwin(60_000); // the window outlasts the test: what is held stays held
    await twin.services.friends.allow(hal.id);
    for (let i = 1; i <= LIMIT; i++) server.sendMessage(hal, { text: `first ${i}` });
    await server.waitFor("the twin typing", () => server.sent("sendChatAction", hal.id).length > 0);
    await settled();
    const calls = modelCalls;
    for (let i = 1; i <= 203; i++) server.sendMessage(hal, { text: `more ${i}` });
    const deadline = Date.now() + 60_000;
    while ((await incoming(hal.id)).length < LIMIT + 203 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));
    await settled();
    const rows = await incoming(hal.id);
    assert.equal(rows.length, LIMIT + 203, "every message stored");
    assert.equal(rows.filter((m) => !m.answered && !m.skipped).length, 200, "200 wait for an answer");
    assert.deepEqual(
      rows.filter((m) => m.skipped).map((m) => m.text),
      ["more 201", "more 202", "more 203"],
      "the rest are skipped",
    );
    assert.equal(modelCalls, calls, "nothing over the limit was answered yet");
    assert.equal(texted(hal.id).filter((t) => t === texts.rateLimited).length, 1, "one rate-limit note");
    assert.equal(texted(hal.id).filter((t) => t === texts.backlogFull).length, 1, "one note for the skipped");
  });

  it("sends code in texts as entities: /import's help has no literal backticks", async () => {
    const help = await ownerSays("/import");
    assert.match(String(help.params.text), /node bin\/twin\.js import result\.json/);
    assert.ok(
      (help.params.entities as { type: string }[] | undefined)?.some((e) => e.type === "code"),
      JSON.stringify(help.params),
    );
    await ownerSays("/cancel");
    assert.deepEqual(
      server.literalCode().map((call) => `${call.method}: ${call.params.text ?? call.params.caption}`),
      [],
      "no text went out with a literal backtick pair",
    );
    const answers = new Map<string, number>();
    for (const call of server.sent("answerCallbackQuery"))
      answers.set(call.params.callback_query_id, (answers.get(call.params.callback_query_id) ?? 0) + 1);
    assert.deepEqual(
      [...answers].filter(([, n]) => n > 1),
      [],
      "no press in this file was answered twice (the /forget confirmation, in a conversation, included)",
    );
  });
});
