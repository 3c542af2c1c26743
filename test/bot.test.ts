import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Message, User } from "grammy/types";
import { createRepositories } from "../src/app.ts";
import { createTwinBot, type TwinBot } from "../src/bot/bot.ts";
import { createBotMessagesRepository } from "../src/bot/bot-messages.repository.ts";
import { conversationPrompt } from "../src/bot/conversation-prompt.ts";
import { createLog } from "../src/bot/log.ts";
import { texts } from "../src/bot/texts.ts";
import { createServing } from "../src/cli/engine-setup.ts";
import type { Config } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { SESSION_GAP_MS } from "../src/dataset/sessions.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import type { RecalledWindow, RetrievalQuery } from "../src/history/memory/retriever.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine } from "../src/inference/engine.ts";
import { promptText } from "../src/inference/prompt.ts";
import { appOf } from "./support/app.ts";
import { BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";
import { writePersonalChatExport } from "./support/personal-chat-export.ts";

const TOKEN = "123456789:AAE-test_token_for_the_local_bot_api_0123";
const owner: User = { id: 121569222, is_bot: false, first_name: "Hamid" };
const anna: User = { id: 5001, is_bot: false, first_name: "Anna" };
const stranger: User = { id: 5002, is_bot: false, first_name: "Bob" };
const carol: User = { id: 5003, is_bot: false, first_name: "Carol" };
const QUIET_MS = 300;

describe("the bot end to end, against a local Bot API server and SmolLM2", { timeout: 600_000 }, () => {
  const server = new BotApiServer(TOKEN);
  const logLines: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bot-test-"));
  let database: TestDatabase;
  let engine: Engine;
  let conversations: Conversations;
  let config: Config;
  let twin: TwinBot;
  let modelCalls = 0;

  const startTwin = async () => {
    conversations = new Conversations(engine);
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
      rateWindowMs: 3_000, // the rate limit's minute, shortened: what waits is answered within the test
    });
    await twin.start();
  };
  const messages = () => createBotMessagesRepository(database);
  const promptDeps = () => ({
    history: createHistoryRepository(database),
    messages: messages(),
    countTokens: engine.countTokens,
    settings: {
      gapMs: SESSION_GAP_MS,
      timeZone: "UTC",
      maxTokens: 2048 - 32,
      memory: { enabled: false, windows: 0 },
    },
  });
  const texted = (chatId: number) =>
    server.sent("sendMessage", chatId).map((call) => String(call.params.text));
  /** A message the bot sent to `chatId`, by index (negative: from the end), as Telegram returned it. */
  const sentMessage = (chatId: number, index: number) =>
    server.messageById(
      (server.sent("sendMessage", chatId).at(index) as { result?: Message }).result?.message_id ?? 0,
    );
  let personalHistory: string;
  /** The fixture supergroup (imported by /import above) as an enabled group; returns its chat id. */
  const enableImportedGroup = async (): Promise<number> => {
    const { rows } = await database.pool.query<{ id: string }>(
      "SELECT id FROM chats WHERE type = 'private_supergroup'",
    );
    const group = Number(rows[0]?.id);
    if (!config.bot.groups.includes(group)) {
      await twin.stop();
      config = { ...config, bot: { ...config.bot, groups: [group] } };
      await startTwin();
    }
    return group;
  };
  /** Waits until the replier has nothing scheduled or running, then for stragglers of the API. */
  const settled = async () => {
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS + 100));
    await twin.services.replier.idle();
  };

  before(async () => {
    await server.start();
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    personalHistory = writePersonalChatExport(
      tmp,
      { id: owner.id, name: "Hamid Khorshidian" },
      { id: anna.id, name: "Anna Petrova" },
    );
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: personalHistory, batchSize: 1000, timeZone: "UTC" },
    );
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 2048,
      sequences: 4,
      threads: 2,
      sampling: { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
      maxReplyTokens: 32,
    });
    // Greedy: the untuned 135M model then follows the history's several-messages-per-turn rhythm
    // deterministically (sampled, it often writes one message with loose lines).
    config = {
      ...database.config,
      dataDir: tmp,
      bot: {
        token: TOKEN,
        ownerId: owner.id,
        apiRoot: server.apiRoot,
        webhook: undefined,
        groups: [],
        rateLimitPerMinute: 10,
        quietMs: QUIET_MS,
        typing: { msPerChar: 1, maxMs: 30 },
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

  it("says it is an AI twin and registers the owner's commands for the owner only", async () => {
    await server.waitFor("commands", () => server.sent("deleteMyCommands").length > 0);
    const description = server.sent("setMyDescription")[0]?.params.description;
    assert.match(String(description), /AI twin of Hamid Khorshidian/, "the description says what the bot is");
    const commands = server.sent("setMyCommands")[0]?.params;
    assert.deepEqual(
      commands?.scope,
      { type: "chat", chat_id: owner.id },
      "the owner's list is scoped to the owner",
    );
    assert.ok(
      commands?.commands.some((c: { command: string }) => c.command === "talk"),
      "the owner's list has /talk",
    );
    assert.deepEqual(
      server.sent("deleteMyCommands")[0]?.params.scope,
      { type: "default" },
      "friends see none",
    );
  });

  it("refuses a stranger once a day without spending model time", async () => {
    server.sendMessage(stranger, { text: "hi" });
    server.sendMessage(stranger, { text: "hello?? anyone" });
    await server.waitFor("the refusal", () => texted(stranger.id).length > 0);
    await settled();
    assert.deepEqual(
      texted(stranger.id),
      [texts.refusal("Hamid Khorshidian")],
      "one refusal for two messages",
    );
    assert.equal(server.sent("sendChatAction", stranger.id).length, 0, "no typing for a stranger");
    assert.equal(modelCalls, 0, "the model was never called");
  });

  it("answers an allowed friend as the owner, message by message behind a typing indicator", async () => {
    // "Anna" is only part of her name: the bot offers her rather than guessing, and the button allows her.
    server.sendMessage(owner, { text: "/allow Anna" });
    const picker = () =>
      server
        .sent("sendMessage", owner.id)
        .find((call) => /Several people match “Anna”/.test(String(call.params.text)));
    await server.waitFor("the picker", () => picker() !== undefined);
    const call = picker() as { params: Record<string, any>; result?: Message };
    const [button] = call.params.reply_markup.inline_keyboard[0];
    assert.match(button.text, /^Anna Petrova · \d+ msg/);
    assert.equal(button.callback_data, `allow:${anna.id}`);
    server.pressButton(
      owner,
      button.callback_data,
      server.messageById(call.result?.message_id ?? 0) as never,
    );
    await server.waitFor("the allow confirmation", () =>
      server
        .sent("editMessageText", owner.id)
        .some((c) => /Anna Petrova can now talk/.test(String(c.params.text))),
    );
    server.sendMessage(anna, { text: "hey" });
    server.sendMessage(anna, { text: "are you around tonight?" });
    await server.waitFor("the twin's reply", () => texted(anna.id).length >= 2, 120_000);
    await settled();
    const sent = texted(anna.id);
    assert.equal(
      sent[0],
      texts.intro("Hamid Khorshidian"),
      "the first message says plainly it is an AI twin",
    );
    const stored = (await messages().recent({ personId: anna.id, mode: "friend" }, 50)).filter(
      (m) => m.fromTwin,
    );
    assert.ok(
      stored.length >= 2,
      `a multi-message reply (${stored.length}): ${JSON.stringify(stored.map((m) => m.text))}`,
    );
    assert.deepEqual(
      sent.slice(1),
      stored.map((m) => m.text),
      "each stored message was sent, in order, once",
    );
    // Every twin message is preceded by a typing action in the friend's chat.
    const toAnna = server.calls.filter((c) => !c.failed && c.params.chat_id === anna.id);
    for (const [index, call] of toAnna.entries()) {
      if (call.method === "sendMessage" && call.params.text !== sent[0]) {
        assert.equal(toAnna[index - 1]?.method, "sendChatAction", `typing before “${call.params.text}”`);
      }
    }
    assert.equal(modelCalls, 1, "two messages in a row were answered once");
  });

  it("answers a burst of three messages once, after it goes quiet, and keeps a sticker as its emoji", async () => {
    const before = modelCalls;
    server.sendMessage(anna, { text: "wait" });
    server.sendMessage(anna, { sticker: { emoji: "😂" } as never });
    server.sendMessage(anna, { text: "pizza at 8 again?" });
    await settled();
    assert.equal(modelCalls - before, 1, "one reply for the burst");
    const ref = { personId: anna.id, mode: "friend" as const };
    assert.equal((await messages().pending(ref)).length, 0, "all three answered");
    const incoming = (await messages().recent(ref, 50)).filter((m) => !m.fromTwin).map((m) => m.text);
    assert.deepEqual(incoming.slice(-3), ["wait", "😂", "pizza at 8 again?"]);
  });

  it("retries the Bot API's 429 and 5xx answers", async () => {
    server.fail("sendMessage", 429, 1, 1);
    server.fail("sendMessage", 502, 1);
    const before = texted(anna.id).length;
    server.sendMessage(anna, { text: "so?" });
    await server.waitFor("a reply despite the errors", () => texted(anna.id).length > before, 120_000);
    await settled();
    const failed = server.calls.filter((c) => c.method === "sendMessage" && c.failed);
    assert.deepEqual(
      failed.map((c) => c.failed),
      [429, 502],
      "both failures happened",
    );
    const last = (await messages().recent({ personId: anna.id, mode: "friend" }, 50)).filter(
      (m) => m.fromTwin,
    );
    assert.ok(
      last.some((m) => m.text === failed[0]?.params.text),
      "the message that met the errors was the twin's reply, and it was sent in the end",
    );
    assert.ok(texted(anna.id).includes(String(failed[0]?.params.text)), "delivered after the retries");
  });

  it("plays the friend for the owner with /talk, and /log shows what the twin said as the owner", async () => {
    server.sendMessage(owner, { text: "/talk Anna Petrova" });
    await server.waitFor("talk mode", () =>
      texted(owner.id).some((t) => /now talking with Anna Petrova/.test(t)),
    );
    const before = texted(owner.id).length;
    server.sendMessage(owner, { text: "hi anna, long time" });
    await server.waitFor("Anna's simulated reply", () => texted(owner.id).length > before, 120_000);
    await settled();
    const talk = await messages().recent({ personId: anna.id, mode: "talk" }, 50);
    assert.equal(talk[0]?.text, "hi anna, long time");
    assert.ok(
      talk.some((m) => m.fromTwin),
      "the twin answered in the talk conversation",
    );
    const { replyAs } = await conversationPrompt(promptDeps(), { personId: anna.id, mode: "talk" }, "Anna");
    assert.equal(replyAs, "Anna Petrova", "in /talk the twin speaks as the friend");

    server.sendMessage(owner, { text: "/log Anna Petrova" });
    await server.waitFor("the transcript", () =>
      texted(owner.id).some((t) => t.startsWith("Your twin and Anna Petrova")),
    );
    const transcript = texted(owner.id).find((t) => t.startsWith("Your twin and Anna Petrova")) as string;
    assert.match(transcript, /Anna Petrova: are you around tonight\?/);
    assert.match(transcript, /twin \(as you\): /);
  });

  it("tells a friend over the rate limit once, politely, and answers the rest in a later round", async () => {
    server.sendMessage(owner, { text: "/allow 5003" });
    await server.waitFor("carol allowed", () =>
      texted(owner.id).some((t) => /User 5003 can now talk/.test(t)),
    );
    for (let i = 0; i < 13; i++) server.sendMessage(carol, { text: `message ${i}` });
    await server.waitFor("the rate-limit note", () => texted(carol.id).includes(texts.rateLimited));
    const waiting = async () =>
      (
        await database.pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM bot_messages WHERE person_id = $1 AND NOT from_twin AND answered_at IS NULL",
          [carol.id],
        )
      ).rows[0]?.n;
    const deadline = Date.now() + 120_000;
    while ((await waiting()) !== 0 && Date.now() < deadline) await settled();
    await settled();
    assert.equal(texted(carol.id).filter((t) => t === texts.rateLimited).length, 1, "told once");
    const stored = (await messages().recent({ personId: carol.id, mode: "friend" }, 50)).filter(
      (m) => !m.fromTwin,
    );
    assert.equal(stored.length, 13, "every message was kept");
    assert.equal(await waiting(), 0, "and answered, the last three in a later round");
  });

  it("/pause stops model calls: friends hear the twin is away", async () => {
    server.sendMessage(owner, { text: "/pause" });
    await server.waitFor("paused", () => texted(owner.id).some((t) => t.startsWith("Paused")));
    const before = modelCalls;
    server.sendMessage(anna, { text: "hello?" });
    await server.waitFor("the away note", () => texted(anna.id).includes(texts.away("Hamid Khorshidian")));
    await settled();
    assert.equal(modelCalls, before, "no model call while paused");
    server.sendMessage(owner, { text: "/resume" });
    await server.waitFor("resumed", () => texted(owner.id).some((t) => t.startsWith("Resumed")));
  });

  it("keeps sessions and conversations across a restart, and answers what came in meanwhile", async () => {
    await twin.stop();
    const before = texted(owner.id).length;
    const annaBefore = texted(anna.id).length;
    server.sendMessage(anna, { text: "you there?" }); // arrives while the bot is down
    await startTwin();
    await server.waitFor(
      "the answer to the message sent while down",
      () => texted(anna.id).length > annaBefore,
      120_000,
    );
    server.sendMessage(owner, { text: "still there?" });
    await server.waitFor("the simulated friend again", () => texted(owner.id).length > before, 120_000);
    await settled();
    const talk = await messages().recent({ personId: anna.id, mode: "talk" }, 50);
    assert.ok(
      talk.some((m) => m.text === "still there?"),
      "the owner is still talking with Anna: the session survived the restart",
    );
    const { prompt } = await conversationPrompt(promptDeps(), { personId: anna.id, mode: "talk" }, "Anna");
    assert.match(
      promptText(prompt.pieces),
      /hi anna, long time/,
      "the earlier conversation is context after the restart",
    );
    // With memory on, it is asked about what is said now, over all the owner has (talk), never for
    // what the prompt already shows; what it recalls sits after the header, before the history.
    const queries: RetrievalQuery[] = [];
    const recalled: RecalledWindow = {
      chatId: anna.id,
      chatTitle: null,
      chatType: "personal_chat",
      hitMessageId: 1,
      via: "text",
      score: 1,
      messages: [
        {
          messageId: 1,
          senderId: anna.id,
          senderName: "Anna",
          sentAt: new Date("2020-02-02T12:00:00Z"),
          text: "the lake!",
        },
      ],
    };
    const retriever = {
      retrieve: async (query: RetrievalQuery) => {
        queries.push(query);
        return [recalled];
      },
    };
    const withMemory = await conversationPrompt(
      {
        ...promptDeps(),
        retriever,
        settings: { ...promptDeps().settings, memory: { enabled: true, windows: 2 } },
      },
      { personId: anna.id, mode: "talk" },
      "Anna",
    );
    assert.equal(queries.length, 1, "asked once");
    const [query] = queries as [RetrievalQuery];
    assert.deepEqual([query.scope, query.limit], [{ kind: "all" }, 2]);
    assert.ok(query.text.includes("still there?"), `the live conversation's last turns: ${query.text}`);
    assert.ok(
      query.exclude.filter((span) => span.chatId === anna.id).length >= 2,
      `the real sessions shown and the stored conversation are never recalled: ${JSON.stringify(query.exclude)}`,
    );
    const text = promptText(withMemory.prompt.pieces);
    const memoryAt = text.indexOf(
      "Earlier · Telegram chat · Anna Petrova · 2020-02-02 Sun 12:00\nAnna Petrova: >>> the lake!",
    );
    assert.ok(memoryAt > 0 && memoryAt < text.indexOf("hi anna, long time"), text.slice(0, 600));
  });

  it("imports a fixture export sent as a document, with an edited status message", async () => {
    server.sendMessage(owner, { text: "/import" });
    await server.waitFor("the import prompt", () => texted(owner.id).some((t) => t.includes("20 MB")));
    const content = fs.readFileSync(fixtures.cuda);
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
        .some((c) => /^Importing result\.json: 218 messages/.test(c.params.text)),
    );
    const { rows } = await database.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM messages WHERE chat_id = (SELECT id FROM chats WHERE type = 'private_supergroup')",
    );
    assert.equal(rows[0]?.n, 218, "the export's messages landed in the store");
  });

  it("keeps a waiting /import across a restart, and cancels the import from its status message", async () => {
    const prompts = () => texted(owner.id).filter((t) => t.includes("20 MB")).length;
    const asked = prompts();
    server.sendMessage(owner, { text: "/import" });
    await server.waitFor("the import prompt", () => prompts() > asked);
    await twin.stop();
    await startTwin(); // the conversation waiting for the document lives in PostgreSQL
    const content = fs.readFileSync(fixtures.irc);
    const fileId = server.addFile(content, "irc.json");
    server.sendMessage(owner, {
      document: { file_id: fileId, file_unique_id: fileId, file_name: "irc.json", file_size: content.length },
    });
    const status = () =>
      server.sent("sendMessage", owner.id).find((c) => c.params.text === "Importing irc.json…");
    await server.waitFor("the status message", () => status() !== undefined);
    const call = status() as { params: Record<string, any>; result?: { message_id: number } };
    const button = call.params.reply_markup.inline_keyboard[0][0];
    assert.equal(button.text, "Cancel");
    server.pressButton(
      owner,
      button.callback_data,
      server.messageById(call.result?.message_id as number) as never,
    );
    await server.waitFor("the cancelled import", () =>
      server
        .sent("editMessageText", owner.id)
        .some((c) => String(c.params.text).startsWith("Importing irc.json: cancelled")),
    );
    const { rows } = await database.pool.query<{ status: string; error: string }>(
      "SELECT status, error FROM imports ORDER BY id DESC LIMIT 1",
    );
    assert.equal(rows[0]?.status, "interrupted", "the import stopped, resumable");
    assert.match(rows[0]?.error ?? "", /^import of irc\.json stopped; what was committed stays/);
  });

  it("logs errors without the token and tells the user something went wrong", async () => {
    server.fail("sendMessage", 400, 1);
    server.sendMessage(owner, { text: "/status" });
    await server.waitFor("the apology", () => texted(owner.id).includes(texts.failed));
    assert.ok(logLines.length > 0, "the error was logged");
    assert.ok(
      logLines.every((line) => !line.includes(TOKEN) && !line.includes(TOKEN.split(":")[1] as string)),
      `no token in the logs: ${logLines.join("")}`,
    );
  });

  it("lets a friend /optout: gone from /talk, never trained on in new datasets; /optin undoes it", async () => {
    const annaTrained = async () => {
      const { datasetId } = await buildDataset(appOf(database), defaultDatasetOptions("UTC"));
      const { rows } = await database.pool.query<{
        segments: { speaker?: string; train: boolean; text: string }[];
      }>("SELECT segments FROM dataset_examples WHERE dataset_id = $1", [datasetId]);
      const annas = rows
        .flatMap((r) => r.segments)
        .filter((g) => g.speaker === "Anna Petrova" && g.text !== "");
      assert.ok(annas.length > 0, "Anna speaks in the dataset");
      return annas.some((g) => g.train);
    };
    assert.equal(await annaTrained(), true, "before: her turns are trained");
    server.sendMessage(anna, { text: "/optout" });
    await server.waitFor("the opt-out", () => texted(anna.id).includes(texts.optedOut));
    assert.equal(await annaTrained(), false, "after: her turns stay as context, untrained");

    const before = modelCalls;
    server.sendMessage(owner, { text: "are you there?" }); // the owner was talking to her simulation
    await server.waitFor("the end of the talk", () =>
      texted(owner.id).some((t) => /opted out of being simulated; the conversation ended/.test(t)),
    );
    server.sendMessage(owner, { text: "/talk Anna Petrova" });
    await server.waitFor(
      "the refusal",
      () => texted(owner.id).filter((t) => t === "Anna Petrova opted out of being simulated.").length > 0,
    );
    server.sendMessage(owner, { text: "/talk" });
    await server.waitFor("the picker", () =>
      server
        .sent("sendMessage", owner.id)
        .some(
          (c) => c.params.text === "Who do you want to talk to?" || /Nobody to talk to/.test(c.params.text),
        ),
    );
    const picker = [...server.sent("sendMessage", owner.id)]
      .reverse()
      .find((c) => /Who do you want|Nobody to talk/.test(c.params.text));
    assert.ok(!JSON.stringify(picker?.params.reply_markup ?? {}).includes("Anna"), "she is not offered");
    await settled();
    assert.equal(modelCalls, before, "no simulation of her was generated");

    server.sendMessage(anna, { text: "/optin" });
    await server.waitFor("the opt-in", () => texted(anna.id).includes(texts.optedIn));
    assert.equal(await annaTrained(), true, "opted in again: trained again");
  });

  it("/forget deletes a friend's history and conversations after a confirmation", async () => {
    server.sendMessage(owner, { text: "/forget Anna Petrova" });
    await server.waitFor("the confirmation", () =>
      texted(owner.id).some((t) => t.startsWith("Delete your personal chat with Anna")),
    );
    const question = [...server.sent("sendMessage", owner.id)]
      .reverse()
      .find((c) => String(c.params.text).startsWith("Delete"));
    const message = server.messageById(
      (question as { result?: { message_id: number } } & typeof question)?.result?.message_id as number,
    );
    server.pressButton(owner, "forget:yes", message as never);
    await server.waitFor("the deletion", () =>
      server
        .sent("editMessageText", owner.id)
        .some((c) => String(c.params.text).startsWith("Deleted your personal chat")),
    );
    const left = await database.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM messages WHERE chat_id = $1",
      [anna.id],
    );
    assert.equal(left.rows[0]?.n, 0, "the personal chat is gone");
    assert.equal(
      await messages().count({ personId: anna.id, mode: "friend" }),
      0,
      "the bot conversation is gone",
    );
  });

  it("allows people by a forwarded message or a shared contact, and ignores groups it was not enabled in", async () => {
    const dave: User = { id: 5004, is_bot: false, first_name: "Dave", last_name: "Forwarded" };
    server.sendMessage(owner, {
      text: "see you there",
      forward_origin: { type: "user", sender_user: dave, date: 0 },
    } as never);
    server.sendMessage(owner, {
      contact: { phone_number: "+100", first_name: "Erin", user_id: 5005 },
    } as never);
    await server.waitFor("both allowed", () =>
      texted(owner.id).some((t) => t.startsWith("Erin can now talk")),
    );
    assert.ok(texted(owner.id).some((t) => t.startsWith("Dave Forwarded can now talk")));
    assert.ok(await twin.services.friends.isAllowed(5004), "the forwarded message's author is allowed");
    assert.ok(await twin.services.friends.isAllowed(5005), "the shared contact is allowed");

    const before = modelCalls;
    server.sendMessage(carol, { text: "hi all" }, -777);
    await settled();
    assert.equal(texted(-777).length, 0, "nothing said in a group that is not enabled");
    assert.equal(modelCalls, before, "and no model time spent");
  });

  it("in an enabled group: owner flows answer one line, no one else can drive them, the owner's words get no answer", async () => {
    const dave: User = { id: 5004, is_bot: false, first_name: "Dave", last_name: "Forwarded" };
    const group = await enableImportedGroup();
    const groupTexts = () => texted(group);
    const imports = async () =>
      (await database.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM imports")).rows[0]?.n;
    const importsBefore = await imports();
    const getFiles = server.sent("getFile").length;
    const ownerPrompts = texted(owner.id).filter((t) => t.includes("20 MB")).length;

    server.sendMessage(owner, { text: "/import" }, group);
    await server.waitFor("the private-only line", () => groupTexts().length > 0);
    assert.deepEqual(groupTexts(), ["/import works only in our private chat: @twin_test_bot."]);
    const content = fs.readFileSync(fixtures.cuda);
    const fileId = server.addFile(content, "result.json");
    const document = {
      file_id: fileId,
      file_unique_id: fileId,
      file_name: "result.json",
      file_size: content.length,
    };
    server.sendMessage(dave, { document }, group); // the attack: a friend answers the owner's /import
    server.sendMessage(owner, { text: "/forget all" }, group);
    server.sendMessage(owner, { text: "hello everyone, plain words of mine" }, group);
    server.sendMessage(owner, { text: "@twin_test_bot say something" }, group);
    await server.waitFor("the second private-only line", () => groupTexts().length > 1);
    await settled();
    assert.deepEqual(
      groupTexts(),
      [
        "/import works only in our private chat: @twin_test_bot.",
        "/forget works only in our private chat: @twin_test_bot.",
      ],
      "one line per owner command; nothing for the owner's own messages",
    );
    assert.equal(await imports(), importsBefore, "the friend's upload imported nothing");
    assert.equal(
      texted(owner.id).filter((t) => t.includes("20 MB")).length,
      ownerPrompts,
      "no import flow started anywhere",
    );
    assert.equal(server.sent("getFile").length, getFiles, "nothing was downloaded");

    // Buttons pressed by the wrong person, or in a group, are answered and change nothing.
    const presses = server.sent("answerCallbackQuery").length;
    const privateMessage = (user: User) =>
      ({
        message_id: 1,
        date: 0,
        chat: { id: user.id, type: "private", first_name: user.first_name },
      }) as never;
    server.pressButton(dave, `allow:${stranger.id}`, privateMessage(dave));
    server.pressButton(stranger, `revoke:${dave.id}`, privateMessage(stranger));
    server.pressButton(owner, "talk:1", sentMessage(group, 0) as never);
    await server.waitFor(
      "three answered presses",
      () => server.sent("answerCallbackQuery").length >= presses + 3,
    );
    assert.equal(await twin.services.friends.isAllowed(stranger.id), false, "a friend cannot allow anyone");
    assert.equal(await twin.services.friends.isAllowed(dave.id), true, "a stranger cannot revoke anyone");
  });

  it("answers a friend who addresses it in a group from that group's history only, in that group", async () => {
    const erin: User = { id: 5005, is_bot: false, first_name: "Erin" };
    const group = await enableImportedGroup();
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: personalHistory, batchSize: 1000, timeZone: "UTC" },
    ); // Anna's private chat is back in the store: it must not reach the group
    const privateBefore = await messages().count({ personId: anna.id, mode: "friend" });
    const before = texted(group).length;
    const typing = () => server.sent("sendChatAction", group).length;
    const typingBefore = typing();
    const toAnna = () => server.calls.filter((c) => c.params.chat_id === anna.id).length;
    const toAnnaBefore = toAnna();
    server.sendMessage(anna, { text: "just chatting among ourselves" }, group); // not addressed: ignored
    server.sendMessage(
      anna,
      {
        text: "@twin_test_bot which driver do you use?",
        entities: [{ type: "mention", offset: 0, length: 14 }],
      },
      group,
    );
    // The reply's text is the model's (greedy, it may be empty on some prompts): what is checked is
    // where everything goes and what the prompt holds.
    await server.waitFor("the twin typing in the group", () => typing() > typingBefore, 60_000);
    await settled();
    const ref = { personId: anna.id, mode: "friend" as const, groupId: group };
    assert.equal((await messages().pending(ref)).length, 0, "her message was answered");
    assert.equal(toAnna(), toAnnaBefore, "nothing went to her private chat");
    const stored = await messages().recent(ref, 50);
    assert.deepEqual(
      stored.filter((m) => !m.fromTwin).map((m) => m.text),
      ["which driver do you use?"],
      "the group conversation holds what was addressed, without the mention",
    );
    assert.equal(
      await messages().count({ personId: anna.id, mode: "friend" }),
      privateBefore,
      "her private conversation is untouched",
    );
    assert.deepEqual(
      texted(group).slice(before + 1),
      stored.filter((m) => m.fromTwin).map((m) => m.text),
      "the reply went to the group",
    );
    const { prompt } = await conversationPrompt(promptDeps(), ref, "Anna");
    const text = promptText(prompt.pieces);
    assert.match(text, /Telegram group/, "the header names a group");
    const groupLine = (
      await database.pool.query<{ text: string }>(
        "SELECT text FROM messages WHERE chat_id = $1 AND kind = 'text' AND text <> '' ORDER BY sent_at DESC LIMIT 1",
        [group],
      )
    ).rows[0]?.text as string;
    assert.ok(text.includes(groupLine.split("\n")[0] as string), "the group's own history is context");
    for (const line of ["rematch on sunday", "wanna grab pizza at 8?", "are you around tonight?"])
      assert.ok(!text.includes(line), `nothing of the private chat reaches the group: “${line}”`);

    // A second person in the same group has a conversation of their own.
    const typed = typing();
    server.sendMessage(erin, { text: "hey", reply_to_message: sentMessage(group, -1) } as never, group);
    await server.waitFor("the twin typing for Erin", () => typing() > typed, 60_000);
    await settled();
    assert.deepEqual(
      (await messages().recent({ personId: erin.id, mode: "friend", groupId: group }, 10))
        .filter((m) => !m.fromTwin)
        .map((m) => m.text),
      ["hey"],
      "a reply to the twin addresses it too, in its own conversation",
    );
  });

  it("sent no text with a literal backtick pair: code goes out as entities", () => {
    assert.deepEqual(
      server.literalCode().map((call) => `${call.method}: ${call.params.text ?? call.params.caption}`),
      [],
    );
  });

  it("runs on a webhook with a generated secret when none is configured; calls without it reach no handler", async () => {
    await twin.stop();
    const port = await freePort();
    config = {
      ...config,
      bot: { ...config.bot, webhook: { url: "https://twin.example.org/hook", port, secret: undefined } },
    };
    await startTwin();
    const set = server.sent("setWebhook").at(-1)?.params;
    assert.equal(set?.url, "https://twin.example.org/hook");
    const secret = String(set?.secret_token);
    assert.match(secret, /^[A-Za-z0-9_-]{32,256}$/, "a secret of at least 32 characters Telegram accepts");
    const update = (text: string, updateId: number) => ({
      update_id: updateId,
      message: {
        message_id: 1,
        date: Math.floor(Date.now() / 1000),
        chat: { id: owner.id, type: "private", first_name: owner.first_name },
        from: owner,
        text,
        entities: [{ type: "bot_command", offset: 0, length: text.length }],
      },
    });
    const post = (body: unknown, token?: string, method = "POST") =>
      fetch(`http://127.0.0.1:${port}/`, {
        method,
        headers: {
          "content-type": "application/json",
          ...(token === undefined ? {} : { "x-telegram-bot-api-secret-token": token }),
        },
        ...(method === "POST" ? { body: JSON.stringify(body) } : {}),
      });
    const before = texted(owner.id).length;
    assert.equal((await post(update("/status", 900_001))).status, 401, "no secret header: refused");
    assert.equal((await post(update("/status", 900_002), "wrong")).status, 401, "a wrong secret: refused");
    assert.equal(
      (await post(update("/status", 900_003), secret.slice(0, -1))).status,
      401,
      "all but the last character: refused",
    );
    assert.equal((await post(undefined, secret, "GET")).status, 405, "only POST");
    const real = await post(update("/status", 900_004), secret);
    assert.equal(real.status, 200);
    await server.waitFor("the webhook's answer", () => texted(owner.id).length > before);
    await settled();
    assert.equal(texted(owner.id).length, before + 1, "only the real call was answered");
    assert.match(texted(owner.id).at(-1) as string, /^History: /);

    await twin.stop();
    await startTwin();
    assert.equal(
      server.sent("setWebhook").at(-1)?.params.secret_token,
      secret,
      "the generated secret is kept across restarts",
    );
    assert.ok(
      logLines.every((line) => !line.includes(secret)),
      "the secret never reaches the log",
    );

    await twin.stop();
    const configured = "configured-webhook-secret-0123456789abcdef";
    config = {
      ...config,
      bot: { ...config.bot, webhook: { url: "https://twin.example.org/hook", port, secret: configured } },
    };
    await startTwin();
    assert.equal(
      server.sent("setWebhook").at(-1)?.params.secret_token,
      configured,
      "a configured secret wins",
    );
    assert.equal(
      (await post(update("/status", 900_005), secret)).status,
      401,
      "the generated one no longer opens",
    );
  });
});

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
