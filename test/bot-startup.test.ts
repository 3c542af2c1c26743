import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded } from "./support/databases.ts";
import { testModel } from "./support/models.ts";

/**
 * `twin bot` as the user starts it, when the Bot API is not there, refuses the token, or fails a
 * few times: it says what it does, one line per failed attempt, and gives up in a bounded time.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TOKEN = "123456789:AAE-startup_test_token_local_api_01";
const SECRET = TOKEN.split(":")[1] as string;
const OWNER_ID = "121569222";
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bot-startup-test-"));
fs.chmodSync(dataDir, 0o755);
after(async () => {
  await stopEmbedded();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Starts `twin bot` with these variables; its stderr is collected, lines as they come. */
function startBot(variables: NodeJS.ProcessEnv) {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TWIN_DATA_DIR: dataDir,
    TWIN_BOT_TOKEN: TOKEN,
    TWIN_OWNER_ID: OWNER_ID,
    TWIN_WORKER: "external",
    ...variables,
  };
  if (!variables.DATABASE_URL) delete env.DATABASE_URL;
  const started = Date.now();
  const bot = spawn(process.execPath, [path.join(root, "bin/twin.js"), "bot"], { cwd: root, env });
  let output = "";
  bot.stdout.on("data", (chunk) => {
    output += chunk;
  });
  bot.stderr.on("data", (chunk) => {
    output += chunk;
  });
  const exited = new Promise<{ code: number | null; seconds: number }>((resolve) =>
    bot.on("exit", (code) => resolve({ code, seconds: (Date.now() - started) / 1000 })),
  );
  const waitFor = async (what: RegExp, timeoutMs = 120_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!what.test(output)) {
      if (Date.now() > deadline || bot.exitCode !== null)
        throw new Error(`no ${what} in the bot's output:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { bot, exited, waitFor, output: () => output };
}

/** A loopback port nothing listens on: taken from the system, then let go. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const attemptLines = (output: string) =>
  output.split("\n").filter((line) => /attempt \d+\/\d+ failed/.test(line));

describe("twin bot's start-up connection to the Bot API", { timeout: 300_000 }, () => {
  it("says where it connects, prints each failed attempt and gives up within the bound when nothing listens", async (t) => {
    const port = await closedPort();
    const apiRoot = `http://127.0.0.1:${port}`;
    const { exited, output } = startBot({ TWIN_BOT_API_ROOT: apiRoot, TWIN_BOT_CONNECT_S: "3" });
    const { code, seconds } = await exited;
    t.diagnostic(`exit ${code} after ${seconds.toFixed(1)} s:\n${output()}`);
    assert.equal(code, 1, "a failed start");
    const lines = output().trim().split("\n");
    assert.equal(lines[0], `twin bot: connecting to the Bot API at ${apiRoot} …`, "first, where it connects");
    const refused = `connect ECONNREFUSED 127.0.0.1:${port}`;
    assert.deepEqual(
      attemptLines(output()),
      [
        `twin bot: attempt 1/3 failed: ${refused}; next attempt in 1 s`,
        `twin bot: attempt 2/3 failed: ${refused}; next attempt in 2 s`,
        `twin bot: attempt 3/3 failed: ${refused}; giving up`,
      ],
      "one line per attempt: 1 + 2 s of waits fit in the 3 s bound",
    );
    assert.match(
      output(),
      new RegExp(
        `^twin: BotApiUnreachableError: no answer from the Bot API at ${apiRoot}: getMe failed 3 times in 3 s \\(last: ${refused}\\); check TWIN_BOT_API_ROOT, the network and any proxy, or allow longer with TWIN_BOT_CONNECT_S \\(now 3 s\\)$`,
        "m",
      ),
    );
    assert.ok(seconds < 30, `gave up in ${seconds} s (the 3 s bound, plus the CLI's own start)`);
    assert.ok(!output().includes(SECRET), "the token never reaches the output");
  });

  it("fails at once, with no retry, when the Bot API refuses the token (401)", async (t) => {
    const server = new BotApiServer("123456789:AAE-another_bots_token_local_api_01");
    await server.start();
    try {
      // The double answers a token it does not know as Telegram does: 401 Unauthorized.
      const wrong = startBot({ TWIN_BOT_API_ROOT: server.apiRoot, TWIN_BOT_CONNECT_S: "60" });
      const { code, seconds } = await wrong.exited;
      t.diagnostic(`exit ${code} after ${seconds.toFixed(1)} s:\n${wrong.output()}`);
      assert.equal(code, 1);
      assert.deepEqual(attemptLines(wrong.output()), [], "no second attempt");
      assert.match(
        wrong.output(),
        new RegExp(
          `^twin: BotTokenRefusedError: the Bot API at ${server.apiRoot} refused TWIN_BOT_TOKEN \\(401 Unauthorized\\): the token is wrong or was revoked; copy the bot's current token from @BotFather$`,
          "m",
        ),
      );
      assert.ok(seconds < 30, `at once (${seconds} s), not after the 60 s bound`);
      assert.ok(!wrong.output().includes(SECRET), "the token never reaches the output");

      // The right token, refused all the same (revoked between two starts): asked once, not again.
      const revoked = new BotApiServer(TOKEN);
      await revoked.start();
      try {
        revoked.fail("getMe", 401, 5);
        const once = startBot({ TWIN_BOT_API_ROOT: revoked.apiRoot, TWIN_BOT_CONNECT_S: "60" });
        assert.equal((await once.exited).code, 1, once.output());
        assert.equal(revoked.calls.filter((call) => call.method === "getMe").length, 1, "getMe asked once");
        assert.match(once.output(), /^twin: BotTokenRefusedError: /m);
      } finally {
        await revoked.close();
      }
    } finally {
      await server.close();
    }
  });

  it("starts after two 502s, one line each; reports a failed getUpdates in one line; stops with an error on 409", async (t) => {
    const server = new BotApiServer(TOKEN);
    await server.start();
    const database = await (backends().at(-1) as ReturnType<typeof backends>[number]).fresh();
    let twin: ReturnType<typeof startBot> | undefined;
    try {
      server.fail("getMe", 502, 2);
      twin = startBot({
        TWIN_BOT_API_ROOT: server.apiRoot,
        TWIN_BOT_CONNECT_S: "10",
        DATABASE_URL: database.config.databaseUrl,
        TWIN_MODEL: testModel(),
      });
      await twin.waitFor(/@twin_test_bot is polling for updates/);
      await server.waitFor("a long poll", () => server.sent("getUpdates").length > 0);
      const lines = twin.output().trim().split("\n");
      assert.deepEqual(
        lines.slice(0, 4),
        [
          `twin bot: connecting to the Bot API at ${server.apiRoot} …`,
          "twin bot: attempt 1/4 failed: 502 Internal Server Error; next attempt in 1 s",
          "twin bot: attempt 2/4 failed: 502 Internal Server Error; next attempt in 2 s",
          "twin bot: connected to the Bot API as @twin_test_bot (bot id 999000001)",
        ],
        "two attempt lines, then the bot's name",
      );
      assert.equal(
        server.calls.filter((call) => call.method === "getMe").length,
        3,
        "getMe asked three times",
      );

      // Polling: a failed getUpdates is one line, and polling goes on.
      const stranger = { id: 5002, is_bot: false, first_name: "Bob" };
      server.fail("getUpdates", 502);
      server.sendMessage(stranger, { text: "hello?" }); // ends the long poll in flight
      await twin.waitFor(/getUpdates failed/, 30_000);
      assert.match(
        twin.output(),
        /^twin bot: getUpdates failed: 502 Internal Server Error; polling again in 1 s \(1 failed in a row\)$/m,
      );
      server.sendMessage(stranger, { text: "anyone?" }); // ends the retried long poll
      await twin.waitFor(/^twin bot: getUpdates works again after 1 failed attempt$/m, 30_000);

      // 409 (another process polls with this token): polling stops, and so does the bot, with an error.
      await server.waitFor("the next long poll", () => server.calls.at(-1)?.method === "getUpdates");
      server.fail("getUpdates", 409);
      server.sendMessage(stranger, { text: "still there?" });
      const { code } = await twin.exited;
      t.diagnostic(`exit ${code}:\n${twin.output()}`);
      assert.equal(code, 1, "polling that stopped on its own is a failed run");
      assert.match(twin.output(), /^twin bot: stopping…$/m, "it stops as on a signal");
      assert.match(
        twin.output(),
        /^twin: BotPollingError: the Bot API ended long polling \(409 [^)]*\): another process is polling with this bot's token, or a webhook was set for it; run one twin bot per token$/m,
      );
      assert.ok(!twin.output().includes(SECRET), "the token never reaches the output");
    } finally {
      if (twin && twin.bot.exitCode === null) {
        twin.bot.kill("SIGKILL");
        await twin.exited;
      }
      await server.close();
      await database.close();
    }
  });
});
