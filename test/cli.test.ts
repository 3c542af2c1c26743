import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../src/config/config.ts";
import { openDatabase } from "../src/db/client.ts";
import { DatabaseError } from "../src/db/db.errors.ts";
import { BotApiServer } from "./support/bot-api-server.ts";
import { fixtureOwners, fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-cli-test-"));
fs.chmodSync(dataDir, 0o755);
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

/** Runs the real `twin` binary on the embedded default database in a scratch data folder. */
function twin(...args: string[]) {
  return twinWithInput(undefined, ...args);
}

function twinWithInput(input: string | undefined, ...args: string[]) {
  // TWIN_WORKER=external: runs queued here wait in the queue (no training in these tests).
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TWIN_DATA_DIR: dataDir,
    TWIN_MAX_REPLY_TOKENS: "24",
    TWIN_WORKER: "external",
  };
  delete env.DATABASE_URL;
  const result = spawnSync(process.execPath, [path.join(root, "bin/twin.js"), ...args], {
    cwd: root,
    env,
    encoding: "utf8",
    timeout: 120_000,
    ...(input !== undefined ? { input } : {}),
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `twin bot` against the local Bot API server, on the scratch data folder. */
function startBot(server: BotApiServer, extra: NodeJS.ProcessEnv = {}) {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TWIN_DATA_DIR: dataDir,
    TWIN_BOT_TOKEN: server.token,
    TWIN_OWNER_ID: fixtureOwners.cuda,
    TWIN_BOT_API_ROOT: server.apiRoot,
    ...extra,
  };
  delete env.DATABASE_URL;
  const bot = spawn(process.execPath, [path.join(root, "bin/twin.js"), "bot"], { cwd: root, env });
  let stderr = "";
  bot.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => bot.on("exit", (code) => resolve(code)));
  return { bot, exited, stderr: () => stderr };
}

describe("the twin command on the embedded database", () => {
  it("imports an export, prints a summary, and stats describe the store", () => {
    const imported = twin("import", fixtures.cuda, "--owner", fixtureOwners.cuda, "--tz", "Asia/Tehran");
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /new\s*│\s*218/);
    assert.match(imported.stdout, /Hamid Khorshidian \(121569222\)/);

    const again = twin("import", fixtures.cuda);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /unchanged\s*│\s*218/, "the stored owner is reused and nothing is added");

    const stats = twin("stats", "--json");
    assert.equal(stats.code, 0, stats.stderr);
    const figures = JSON.parse(stats.stdout);
    assert.equal(figures.messages, 218);
    assert.deepEqual(figures.chatsByType, [{ type: "private_supergroup", chats: 1, messages: 218 }]);
    assert.equal(figures.owner.id, 121569222);
    assert.equal(figures.firstMessageAt.slice(0, 10), "2019-05-11");

    const table = twin("stats");
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /private_supergroup/);
  });

  it("builds a dataset and shows examples with the trained text marked when piped", () => {
    const out = path.join(dataDir, "dataset");
    const built = twin("dataset", "--groups", "--since", "all", "--out", out);
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stdout, /^dataset \d+: \d+ sessions from 1 chat, \d+\.\d\d messages per session/);
    // The summary table starts with its first figure, not a blank header row.
    assert.match(built.stdout, /messages per session\n┌[─┬]+┐\n│ examples \(train \/ eval\) │/, built.stdout);
    for (const file of ["train.jsonl", "eval.jsonl", "manifest.json"]) {
      assert.ok(fs.existsSync(path.join(out, file)), file);
    }
    const shown = twin("dataset", "show", "--n", "2", "--seed", "7");
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stdout.match(/^── /gm)?.length, 2);
    assert.match(shown.stdout, /⟦>>> [^⟧]*<\|im_end\|>⟧/);
    assert.ok(!shown.stdout.includes("\u001b["), "no colour codes when piped");
    assert.equal(
      twin("dataset", "show", "--n", "2", "--seed", "7").stdout,
      shown.stdout,
      "same seed, same sample",
    );
  });

  it("fails with one clear line, not a stack trace, on a missing file or a bad setting", () => {
    const missing = twin("import", "/nonexistent/result.json");
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr.trim(),
      "twin: HistoryError: /nonexistent/result.json: no such file or folder",
    );

    const env = { ...process.env, TWIN_DATA_DIR: dataDir, TWIN_TIMEZONE: "UTC" };
    const typo = spawnSync(process.execPath, [path.join(root, "bin/twin.js"), "stats"], {
      env,
      encoding: "utf8",
    });
    assert.equal(typo.status, 1);
    assert.match(typo.stderr, /^twin: ConfigError: Configuration error in TWIN_TIMEZONE: unknown variable/);

    const noUserbot = twin("export");
    assert.equal(noUserbot.code, 1);
    assert.equal(
      noUserbot.stderr.trim(),
      "twin: set TWIN_API_ID and TWIN_API_HASH (from my.telegram.org) first",
    );
  });
  it("registers a model and chats in the terminal as the owner", () => {
    // The store holds the CUDA export from the first test: its owner is the one the twin plays.
    const notModel = twin("model", "add", fixtures.cuda);
    assert.notEqual(notModel.code, 0, "a JSON file is not a model");
    assert.match(notModel.stderr, /not a readable GGUF file/, notModel.stderr);

    const added = twin("model", "add", testModel(), "--name", "smol");
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /registered smol: llama, 30 layers, .* \(default\)/, added.stdout);
    const listed = twin("model", "list");
    assert.match(listed.stdout, /\*\s*│\s*smol\s*│\s*llama/, listed.stdout);

    const none = twin("chat");
    assert.notEqual(none.code, 0, "chat needs --with or --as");
    assert.match(none.stderr, /exactly one of --with/, none.stderr);
    // Two lines at once: one burst, as a friend's messages typed in a row are.
    const chat = twinWithInput("hey, how are you?\nstill there?\n/quit\n", "chat", "--with", "Reza Behboodi");
    assert.equal(chat.code, 0, chat.stderr);
    assert.match(
      chat.stdout,
      /You are Reza Behboodi; the twin is Hamid Khorshidian \([1-9]\d* turns of real history/,
      "their group sessions are the history",
    );
    assert.match(chat.stdout, /Hamid Khorshidian: \S/, `the twin answered: ${chat.stdout}`);
  });

  it("queues a training run after showing its plan, lists it and cancels it", () => {
    const refused = twin("train");
    assert.notEqual(refused.code, 0, "no confirmation without a terminal");
    assert.match(refused.stderr, /pass --yes/, refused.stderr);
    const env = ["--set", "max_steps=3"];
    const queued = twinWithInput(undefined, "train", "--yes", "--detach", ...env);
    assert.equal(queued.code, 0, queued.stderr);
    assert.match(queued.stdout, /^Dataset \d+: .*sessions/m, "the plan names the dataset");
    assert.match(queued.stdout, /3 steps of [\d,]+ tokens; time: roughly \d+/, "steps and a rough time");
    assert.match(
      queued.stdout,
      /time: roughly .* \(\d+.*–\d+ (s|min), from the model's size and this hardware\)\.\nWhere the time goes: loading \d+ s, 3 steps × [\d.]+ s, (2 held-out passes × .*, )?export \d+ s;/,
      "a range, and the fixed costs beside the steps",
    );
    const run = /queued run (\d+)/.exec(queued.stdout)?.[1];
    assert.ok(run, `a run was queued: ${queued.stdout}`);
    assert.match(twin("train", "list").stdout, new RegExp(`${run}\\s*│\\s*queued`), "list shows it queued");
    const cancelled = twin("train", "cancel", run);
    assert.equal(cancelled.stdout, `run ${run} cancelled\n`, cancelled.stderr);
    assert.match(twin("train", "list").stdout, new RegExp(`${run}\\s*│\\s*cancelled`));
    const log = twin("train", "log", run);
    assert.equal(log.code, 0, log.stderr);
    assert.equal(log.stdout, `run ${run} (cancelled) has printed nothing besides its progress\n`);
    assert.match(twin("train", "log", "999").stderr, /NoSuchRunError: there is no run 999/);
    assert.match(
      twin("train", "cancel", run).stdout,
      /is not queued or running/,
      "cancelling twice is harmless",
    );
  });

  it("runs the bot against a Bot API server until SIGTERM, and refuses to start without a token", async () => {
    const missing = twin("bot");
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /TWIN_BOT_TOKEN is not set/, missing.stderr);

    const token = "123456789:AAE-cli_test_token_for_local_api_01";
    const server = new BotApiServer(token);
    await server.start();
    try {
      const { bot, exited, stderr } = startBot(server);
      const owner = { id: Number(fixtureOwners.cuda), is_bot: false, first_name: "Hamid" };
      await server.waitFor("the bot polling", () => server.sent("getUpdates").length > 0);
      server.sendMessage(owner, { text: "/status" });
      await server.waitFor("the status", () => server.sent("sendMessage", owner.id).length > 0);
      assert.match(String(server.sent("sendMessage", owner.id)[0]?.params.text), /^History: 218 messages/);
      bot.kill("SIGTERM");
      assert.equal(await exited, 0, `a clean stop: ${stderr()}`);
      assert.ok(!stderr().includes(token.split(":")[1] as string), "the token never reaches the output");
    } finally {
      await server.close();
    }
  });

  it("stops the bot within 10 s of SIGTERM mid-reply; the cut reply is answered after the restart, once", async () => {
    const token = "123456789:AAE-cli_test_token_for_local_api_01";
    const server = new BotApiServer(token);
    await server.start();
    const owner = { id: Number(fixtureOwners.cuda), is_bot: false, first_name: "Hamid" };
    const friend = { id: 5001, is_bot: false, first_name: "Fay" };
    const quick = { TWIN_REPLY_QUIET_MS: "0", TWIN_TYPING_MAX_MS: "0", TWIN_WORKER: "external" };
    try {
      // Sampling as wide as it goes: the reply runs to its 4,096-token limit (tens of seconds here).
      const rambling = startBot(server, {
        ...quick,
        TWIN_MAX_REPLY_TOKENS: "4096",
        TWIN_CONTEXT_SIZE: "8192",
        TWIN_TEMPERATURE: "2",
        TWIN_TOP_K: "0",
        TWIN_TOP_P: "1",
        TWIN_MIN_P: "0",
      });
      await server.waitFor("the bot polling", () => server.sent("getUpdates").length > 0);
      server.sendMessage(owner, { text: `/allow ${friend.id}` });
      await server.waitFor("the friend allowed", () => server.sent("sendMessage", owner.id).length > 0);
      server.sendMessage(friend, { text: "tell me everything" });
      await server.waitFor("the reply under way", () => server.sent("sendChatAction", friend.id).length > 0);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // well inside the generation
      const stopping = Date.now();
      rambling.bot.kill("SIGTERM");
      assert.equal(await rambling.exited, 0, `a clean stop: ${rambling.stderr()}`);
      const took = Date.now() - stopping;
      assert.ok(took < 10_000, `stopped in ${took} ms`);
      const before = server.sent("sendMessage", friend.id).length;

      const again = startBot(server, { ...quick, TWIN_MAX_REPLY_TOKENS: "24", TWIN_TEMPERATURE: "0" });
      await server.waitFor(
        "the answer after the restart",
        () => server.sent("sendMessage", friend.id).length > before,
        120_000,
      );
      await new Promise((resolve) => setTimeout(resolve, 1500));
      again.bot.kill("SIGTERM");
      assert.equal(await again.exited, 0, again.stderr());
      const sent = server.sent("sendMessage", friend.id).map((call) => String(call.params.text));
      assert.equal(new Set(sent).size, sent.length, `nothing sent twice: ${JSON.stringify(sent)}`);
    } finally {
      await server.close();
    }
  });

  it("works in the one process the user starts: no child to outlive it, exit status and SIGTERM as they are", async (t) => {
    const env: NodeJS.ProcessEnv = { ...process.env, TWIN_DATA_DIR: dataDir };
    delete env.UV_THREADPOOL_SIZE;
    delete env.DATABASE_URL;
    const bin = path.join(root, "bin/twin.js");
    const typo = spawnSync(process.execPath, [bin, "stast"], { cwd: root, env, encoding: "utf8" });
    assert.equal(typo.status, 1, "the child's exit status comes back");
    assert.match(typo.stderr, /unknown command 'stast'/, typo.stderr);

    // A chat waits on its input; SIGTERM to the launcher must reach the chat, or this never ends.
    const chat = spawn(process.execPath, [bin, "chat", "--with", "Reza Behboodi"], { cwd: root, env });
    t.after(() => chat.kill("SIGKILL")); // a failed check must not leave the chat waiting on its input
    let output = "";
    chat.stdout.on("data", (chunk) => {
      output += chunk;
    });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      chat.on("exit", (code, signal) => resolve({ code, signal })),
    );
    const deadline = Date.now() + 60_000;
    while (!output.includes("You are Reza Behboodi") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.match(output, /You are Reza Behboodi/, `the chat started: ${output}`);
    const children = fs
      .readdirSync("/proc")
      .filter((entry) => /^\d+$/.test(entry))
      .filter((entry) => {
        try {
          // The embedded server the chat may have started is detached: its own session, not the chat's child process to wait on.
          if (fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "postgres") return false;
          return (
            fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.split(" ")[1] === String(chat.pid)
          );
        } catch {
          return false;
        }
      });
    assert.deepEqual(children, [], "the chat runs in the process that was started, with no child process");
    chat.kill("SIGTERM");
    const timer = setTimeout(() => chat.kill("SIGKILL"), 20_000);
    const end = await exited;
    clearTimeout(timer);
    assert.notEqual(end.signal, "SIGKILL", "SIGTERM ended it");
  });
});

describe("database errors", () => {
  it("never show the password of DATABASE_URL", async () => {
    const config = loadConfig({ DATABASE_URL: "postgres://twin:s3cr3t-pw@127.0.0.1:1/twin" });
    await assert.rejects(openDatabase(config), (error) => {
      assert.ok(error instanceof DatabaseError, String(error));
      assert.match(error.message, /^Cannot connect to 127\.0\.0\.1:1\/twin/);
      assert.ok(!error.message.includes("s3cr3t"), error.message);
      return true;
    });
  });
});
