import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
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
import { Logins } from "../src/userbot/logins.ts";
import { createSessionStore } from "../src/userbot/session-store.ts";
import { createUserbot } from "../src/userbot/setup.ts";
import { BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";
import { ScriptedAccount } from "./support/scripted-account.ts";
import { ScriptedTelegram } from "./support/scripted-auth.ts";

const TOKEN = "123456789:AAE-export_test_token_for_the_local_api";
const owner: User = { id: 121569222, is_bot: false, first_name: "Hamid" };

describe("/export: the userbot logs in through the bot and pulls the history", { timeout: 300_000 }, () => {
  const server = new BotApiServer(TOKEN);
  const telegram = new ScriptedTelegram();
  const logLines: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-export-test-"));
  const key = randomBytes(32);
  let database: TestDatabase;
  let engine: Engine;
  let twin: TwinBot;
  let logins: Logins;

  const texted = () => server.sent("sendMessage", owner.id).map((c) => String(c.params.text));
  const lastKeypad = (): Message => {
    const call = [...server.sent("sendMessage", owner.id)]
      .reverse()
      .find((c) => c.params.reply_markup?.inline_keyboard?.[0]?.[0]?.callback_data === "kp:1");
    return server.messageById((call as unknown as { result: Message }).result.message_id) as Message;
  };
  const type = async (code: string) => {
    const keypadMessage = lastKeypad();
    for (const digit of code) server.pressButton(owner, `kp:${digit}`, keypadMessage);
    server.pressButton(owner, "kp:ok", keypadMessage);
  };
  const waitText = (what: string, pattern: RegExp) =>
    server.waitFor(what, () => texted().some((t) => pattern.test(t)));
  /** Sends /export and returns the phone prompt it answers with (its QR button is pressed on it). */
  const exportPrompt = async (): Promise<Message> => {
    const prompts = () =>
      server.sent("sendMessage", owner.id).filter((c) => /Send your phone number/.test(c.params.text));
    const asked = prompts().length;
    server.sendMessage(owner, { text: "/export" });
    await server.waitFor("the phone prompt", () => prompts().length > asked);
    const prompt = prompts().at(-1) as unknown as { result: Message };
    return server.messageById(prompt.result.message_id) as Message;
  };
  /** What bot_storage holds, taken while the login conversation waits (its state is stored then). */
  const snapshots: string[] = [];
  const snapshot = async () => {
    const stored = await database.pool.query<{ text: string }>(
      "SELECT key || ' ' || value::text AS text FROM bot_storage",
    );
    snapshots.push(stored.rows.map((r) => r.text).join("\n"));
  };

  before(async () => {
    await server.start();
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 1024,
      sequences: 1,
      threads: 1,
      sampling: { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
      maxReplyTokens: 16,
    });
    const sessions = createSessionStore(database.db, key);
    logins = new Logins(
      () => telegram.client(),
      (ownerId, session) => sessions.save(ownerId, session),
    );
    const account = new ScriptedAccount();
    account.personalChat(account.addUser(5001, "Anna", { lastName: "Petrova" }), 250);
    account.personalChat(account.addUser(5002, "Boris"), 130);
    const config: Config = {
      ...database.config,
      dataDir: tmp,
      bot: {
        token: TOKEN,
        ownerId: owner.id,
        apiRoot: server.apiRoot,
        webhook: undefined,
        groups: [],
        rateLimitPerMinute: 100,
        quietMs: 100,
        typing: { msPerChar: 0, maxMs: 0 },
        progressEditMs: 20,
      },
    };
    twin = await createTwinBot({
      config,
      database,
      conversations: new Conversations(engine),
      countTokens: engine.countTokens,
      model: createServing({ config, repositories: createRepositories(database) }, engine),
      log: createLog([TOKEN], (line) => logLines.push(line)),
      userbot: {
        logins,
        sessions,
        historyClient: async () => Object.assign(account, { disconnect: async () => undefined }),
        authClient: () => telegram.client(),
      },
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

  it("logs in with the code on a keypad, through a wrong and an expired code and 2FA, then pulls", async () => {
    server.sendMessage(owner, { text: "/export" });
    await waitText("the phone prompt", /Send your phone number/);
    server.sendMessage(owner, { text: "call me maybe" });
    await waitText("the phone check", /does not look like a phone number/);
    server.sendMessage(owner, { text: "+44 7000 222333" });
    await waitText("the keypad", /Type it on these buttons/);

    await type("11111");
    await waitText("the wrong code", /That code is wrong/);
    await snapshot();
    telegram.expireNext = true;
    await type(telegram.codes[0] as string);
    await waitText("the expired code", /expired; Telegram is sending a new one/);
    await waitText("the new keypad", /Type the new code/);
    assert.equal(telegram.sent, 2, "a new code was sent");
    await type(telegram.codes[1] as string);
    await waitText(
      "the password prompt",
      /Two-step verification is on\. Send your password \(hint: our first pet\)/,
    );

    // A password may start with "/": while it is awaited, every text is the password, never a command.
    const wrong = server.sendMessage(owner, {
      text: "/wrong-password-guess",
      entities: [{ type: "bot_command", offset: 0, length: 21 }],
    });
    await waitText("the wrong password", /That password is wrong/);
    await snapshot();
    const right = server.sendMessage(owner, { text: telegram.password });
    await waitText("the login", /^Logged in\./);
    const deleted = server.sent("deleteMessage").map((c) => c.params.message_id);
    assert.ok(
      deleted.includes(wrong.message?.message_id) && deleted.includes(right.message?.message_id),
      "both password messages were deleted",
    );
    assert.deepEqual(telegram.signIns, ["11111", "73195", "86420"], "Telegram saw each code once, as typed");

    await server.waitFor("the pull", () =>
      server
        .sent("editMessageText", owner.id)
        .some((c) => /^Pulling your history: 380 messages from 2 chats \(380 new\)/.test(c.params.text)),
    );
    const { rows } = await database.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM messages");
    assert.equal(rows[0]?.n, 380);
    const progress = server.sent("editMessageText", owner.id).map((c) => String(c.params.text));
    assert.ok(
      progress.some((t) => /\d+\/2 chats · [\d,]+ messages · \d+ messages\/s · /.test(t)),
      `the status shows chats, messages, rate and the current chat: ${progress.join(" | ")}`,
    );
  });

  it("keeps no code, password or session in the database or the logs", async () => {
    await snapshot();
    const everything = snapshots.join("\n");
    assert.match(snapshots[1] as string, /conversation:/, "the waiting login's state was in PostgreSQL");
    for (const secret of [
      telegram.password,
      "/wrong-password-guess",
      ...telegram.codes.slice(0, 2),
      "11111",
      telegram.session,
    ]) {
      assert.ok(!everything.includes(secret), `bot_storage does not hold ${secret.slice(0, 3)}…`);
      assert.ok(!logLines.join("").includes(secret), `the logs do not hold ${secret.slice(0, 3)}…`);
    }
    const sealed = await database.pool.query<{ sealed: string }>("SELECT sealed FROM userbot_sessions");
    assert.equal(sealed.rows.length, 1);
    assert.ok(
      !sealed.rows[0]?.sealed.includes(telegram.session.slice(0, 20)),
      "the session is stored sealed",
    );
    assert.equal(
      await createSessionStore(database.db, key).load(owner.id),
      telegram.session,
      "and opens with the key",
    );
    await assert.rejects(createSessionStore(database.db, randomBytes(32)).load(owner.id), /does not open/);
  });

  it("refuses to start without the key while a sealed session is stored, and says why", async () => {
    await createSessionStore(database.db, key).save(owner.id, telegram.session);
    const withoutKey = {
      ...database.config,
      userbot: { apiId: 1, apiHash: "0".repeat(32), sessionKey: undefined },
    };
    await assert.rejects(createUserbot(withoutKey, database, owner.id), /TWIN_SESSION_KEY is not set/);
    const withKey = { ...withoutKey, userbot: { ...withoutKey.userbot, sessionKey: key.toString("hex") } };
    assert.ok(await createUserbot(withKey, database, owner.id), "with its key the userbot is set up");
  });

  it("/cancel stops a login at the keypad; /logout ends the session at Telegram and deletes it", async () => {
    server.sendMessage(owner, { text: "/logout" });
    await waitText("the logout", /^Logged out at Telegram/);
    assert.ok(telegram.loggedOut, "auth.logOut was called");
    const left = await database.pool.query("SELECT 1 FROM userbot_sessions");
    assert.equal(left.rowCount, 0, "the sealed session is gone");

    server.sendMessage(owner, { text: "/export" });
    await server.waitFor(
      "a second phone prompt",
      () => texted().filter((t) => /Send your phone number/.test(t)).length === 2,
    );
    server.sendMessage(owner, { text: "+44 7000 222333" });
    await server.waitFor(
      "a keypad",
      () => texted().filter((t) => /Type it on these buttons/.test(t)).length === 2,
    );
    server.sendMessage(owner, { text: "/cancel" });
    await waitText("the cancel", /^Cancelled\./);
    assert.equal(logins.stage(owner.id), undefined, "the login in memory is gone too");
    const answers = server.sent("answerCallbackQuery").length;
    server.pressButton(owner, "kp:1", lastKeypad());
    await server.waitFor("the keypad refusal", () => server.sent("answerCallbackQuery").length > answers);
    assert.match(String(server.sent("answerCallbackQuery").at(-1)?.params.text), /No code is expected/);
  });

  it("logs in with a QR code instead, refreshing the picture as tokens expire", async () => {
    telegram.qrTtlMs = 3500; // refreshed 3 s before it expires: within a second
    server.pressButton(owner, "login:qr", await exportPrompt());
    await server.waitFor("the QR picture", () => server.sent("sendPhoto", owner.id).length > 0);
    const photo = server.sent("sendPhoto", owner.id)[0] as unknown as {
      params: Record<string, any>;
      result: Message;
    };
    assert.ok(photo.params.photo.uploaded > 0, "a PNG was uploaded");
    await server.waitFor("a refreshed picture", () => server.sent("editMessageMedia", owner.id).length > 0);
    assert.ok(telegram.qrTokens >= 2, `a new token replaced the expiring one (${telegram.qrTokens})`);

    const done = () => server.pressButton(owner, "qr:done", photo.result);
    done();
    await waitText("the nudge", /^Not scanned yet/);
    telegram.qrScanned = true;
    done();
    await server.waitFor(
      "the password prompt",
      () => texted().filter((t) => /Two-step verification is on/.test(t)).length === 2,
    );
    server.sendMessage(owner, { text: telegram.password });
    await server.waitFor(
      "the second login",
      () => texted().filter((t) => /^Logged in\./.test(t)).length === 2,
    );
    const stored = await database.pool.query<{ text: string }>("SELECT value::text AS text FROM bot_storage");
    assert.ok(
      !stored.rows.some((r) => r.text.includes("scripted-token")),
      "no QR token in conversation state",
    );
    assert.equal(
      await createSessionStore(database.db, key).load(owner.id),
      telegram.session,
      "the session is stored",
    );
  });

  it("leaves the password step with its Cancel button, since any text there is the password", async () => {
    server.sendMessage(owner, { text: "/logout" });
    await server.waitFor(
      "the logout",
      () => texted().filter((t) => /^Logged out at Telegram/.test(t)).length === 2,
    );
    telegram.qrScanned = true; // the phone has scanned: the QR login goes straight to the password
    const prompt = await exportPrompt();
    const passwordPrompts = () =>
      server.sent("sendMessage", owner.id).filter((c) => /Two-step verification is on/.test(c.params.text));
    const before = passwordPrompts().length;
    server.pressButton(owner, "login:qr", prompt);
    await server.waitFor("the password prompt", () => passwordPrompts().length > before);
    const passwordPrompt = passwordPrompts().at(-1) as unknown as {
      params: Record<string, any>;
      result: Message;
    };
    const button = passwordPrompt.params.reply_markup.inline_keyboard[0][0];
    assert.equal(button.text, "Cancel");
    server.pressButton(owner, button.callback_data, passwordPrompt.result);
    await waitText("the cancel", /^Cancelled: the userbot is not logged in/);
    assert.equal(logins.stage(owner.id), undefined, "the login in memory is gone");
    assert.equal(await createSessionStore(database.db, key).exists(owner.id), false, "no session was stored");
  });
});
