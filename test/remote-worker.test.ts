import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Message, User } from "grammy/types";
import { createRepositories } from "../src/app.ts";
import { createTwinBot } from "../src/bot/bot.ts";
import { createLog } from "../src/bot/log.ts";
import { createServing } from "../src/cli/engine-setup.ts";
import { loadConfig } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine } from "../src/inference/engine.ts";
import { buildPrompt } from "../src/inference/prompt.ts";
import { RemoteWorkers } from "../src/remote/remote-workers.ts";
import { planRun, queueRun } from "../src/training/train.usecase.ts";
import { type ApiCall, BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";
import { trainerWheelhouse } from "./support/remote-files.ts";
import { type SshRemote, sshRemoteUnavailable, startSshRemote } from "./support/ssh-remote.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
after(stopEmbedded);

/** Secrets of the local twin that must never reach the remote. */
const SECRETS = {
  TWIN_BOT_TOKEN: "123456789:AAremoteWorkerTestTokenAAAAAAAAAAAA",
  TWIN_API_HASH: "0123456789abcdef0123456789abcdef",
  TWIN_SESSION_KEY: "5e55102b6b3f4c0e9a1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f70819",
};
const HF_TOKEN = "hf_remoteWorkerTestToken0123";
/** A short run of the test model (dataset rows are at most 256 tokens by estimate; a few run longer). */
const OVERRIDES = (maxSteps: number) => ({
  max_steps: String(maxSteps),
  save_every: "2",
  eval_every: "0",
  max_eval_examples: "4",
  tokens_per_batch: "512",
});

type Worker = { child: ChildProcess; output: () => string; exited: Promise<number | null> };

/**
 * The worker trains on "the remote": another unix user on this machine, in a network namespace with
 * loopback only, reached through a real sshd; PostgreSQL is reachable there only through the tunnel.
 */
describe("twin worker remote: a rented GPU box over SSH", {
  timeout: 900_000,
  skip: sshRemoteUnavailable(),
}, () => {
  let remote: SshRemote;
  let database: TestDatabase;
  let env: NodeJS.ProcessEnv;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-remote-test-"));

  const startWorker = (address: string, extra: string[] = []): Worker => {
    const child = spawn(
      process.execPath,
      [path.join(root, "bin/twin.js"), "worker", "remote", address, ...extra],
      {
        cwd: tmp,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    return { child, output: () => output, exited: new Promise((resolve) => child.on("exit", resolve)) };
  };

  const queue = async (maxSteps: number) => {
    const app = { config: database.config, database, repositories: createRepositories(database) };
    app.config.training = {
      ...app.config.training,
      configFile: "smollm2-135m-lora-cpu.yaml",
      overrides: OVERRIDES(maxSteps),
    };
    const plan = await planRun(app, { target: "remote:remote" });
    return (await queueRun(app, plan)).id;
  };

  const workerRoles = async () =>
    (await database.pool.query("SELECT rolname FROM pg_roles WHERE rolname LIKE 'twin\\_worker\\_%'")).rows;

  before(async () => {
    remote = await startSshRemote();
    // The remote installs the trainer from wheels on its own disk: it has no network.
    const wheels = trainerWheelhouse();
    // A fresh remote: the venv is made by this test.
    fs.rmSync("/home/twinremote/.cache/twin-worker", { recursive: true, force: true });
    database = await backends()[0]!.fresh(); // the embedded server: the role logs in with its password
    const repositories = createRepositories(database);
    await importDesktopExport(
      { historyRepository: repositories.history },
      { input: fixtures.irc, batchSize: 25_000, timeZone: "UTC" },
    );
    await buildDataset(
      { database, repositories },
      // Without memory: its turns would outgrow the small rows this run trains on.
      { ...defaultDatasetOptions("UTC"), groups: true, since: null, maxTokens: 256, memory: undefined },
    );
    // The base is in root's home, which the remote's user cannot read: it has no HF weights, so
    // twin sends its GGUF over the link.
    await repositories.models.add({ ggufPath: testModel() });
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: database.url,
      TWIN_DATA_DIR: path.join(tmp, "data"),
      TWIN_SSH_CONFIG: remote.configFile,
      TWIN_REMOTE_PIP_OPTIONS: `--no-index --find-links ${wheels}`,
      TWIN_WORKER_STALE_S: "10",
      HF_TOKEN,
      ...SECRETS,
    };
  });
  after(async () => {
    await remote?.stop();
    await database?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("trains a queued run over the tunnel, resumes it after the link drops, stops the next on Ctrl-C with its checkpoint, with only the role's password and HF_TOKEN crossing; the adapter answers", async () => {
    // One session does it all: a clean start (a fresh venv, the preflight), a dropped link mid-run,
    // and Ctrl-C during the next run, since each remote session costs a minute of set-up.
    const runId = await queue(6);
    const next = await queue(40);
    const runs = createRepositories(database).runs;
    const worker = startWorker(remote.url("remote"));
    let ended = false;
    void worker.exited.then(() => {
      ended = true;
    });
    // While it trains: what the remote's processes hold.
    const seen = new Map<number, { command: string; environ: string[] }>();
    const watching = setInterval(() => {
      for (const process of remote.processes()) {
        if (seen.has(process.pid)) continue;
        try {
          seen.set(process.pid, { command: process.command, environ: remote.environ(process.pid) });
        } catch {
          // gone meanwhile
        }
      }
    }, 200);
    const storedCheckpoint = async () =>
      (
        await database.pool.query(
          "SELECT 1 FROM training_files WHERE run_id = $1 AND kind = 'checkpoint' AND step >= 2",
          [runId],
        )
      ).rows.length > 0;
    const deadline = Date.now() + 400_000;
    while (!(await storedCheckpoint())) {
      assert.ok(Date.now() < deadline && !ended, `a checkpoint was stored: ${worker.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await remote.dropConnections();
    // The next run, once it has a checkpoint: Ctrl-C.
    const nextCheckpoint = async () =>
      Number(
        (
          await database.pool.query(
            "SELECT max(step) AS step FROM training_files WHERE run_id = $1 AND kind = 'checkpoint'",
            [next],
          )
        ).rows[0]?.step ?? 0,
      );
    while ((await nextCheckpoint()) < 2) {
      assert.ok(
        Date.now() < deadline + 300_000 && !ended,
        `run ${next} stored a checkpoint: ${worker.output()}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    worker.child.kill("SIGINT");
    const code = await worker.exited;
    clearInterval(watching);
    const interrupted = await runs.get(next);
    const kept = await nextCheckpoint();
    await runs.requestCancel(next); // out of the next test's way, whatever is asserted below
    assert.equal(code, 130, `Ctrl-C's exit status: ${worker.output()}`);
    assert.match(worker.output(), /remote: done \(stopped\)/);
    assert.equal(interrupted?.status, "queued", `Ctrl-C puts it back in the queue: ${interrupted?.error}`);
    assert.ok((interrupted?.step ?? 40) < 40 && kept >= 2, "with its checkpoint, to resume from");
    assert.match(
      worker.output(),
      /remote: no NVIDIA GPU \(trains on the CPU\); [\d.]+ GB free disk/,
      "the preflight",
    );
    assert.match(worker.output(), /setting up the trainer/, "the venv was made");
    assert.equal(
      worker.output().match(/sending the base SmolLM2-135M-Instruct\.Q4_1 \(.*, \d+ MB\), once/g)?.length,
      1,
      `the base went over the link once, not again after the drop: ${worker.output()}`,
    );
    assert.match(worker.output(), /the link was lost; run \d+ went back to the queue/);
    assert.match(worker.output(), /trained run \d+/);

    const run = await runs.get(runId);
    assert.equal(run?.status, "succeeded", `${run?.error}\n${worker.output()}`);
    assert.equal(run?.step, 6, "it ends at max_steps");
    const events = await runs.events(runId);
    const starts = events.filter((e) => e.event === "start").map((e) => Number(e.data.resumed_from));
    assert.equal(starts.length, 2, "trained twice: before and after the drop");
    assert.ok((starts[1] as number) >= 2, `resumed from its checkpoint (${starts})`);
    const steps = events.filter((e) => e.event === "log").map((e) => Number(e.data.step));
    assert.deepEqual(
      steps,
      [...new Set(steps)].sort((a, b) => a - b),
      `each step logged once: ${steps}`,
    );
    assert.equal(steps.at(-1), 6);
    assert.match(
      String(run?.worker ?? (await runs.events(runId)).find((e) => e.event === "claimed")?.data.worker),
      /:/,
    );
    const active = await runs.activeAdapter();
    assert.equal(active?.runId, runId, "its adapter is the active one");

    // Nothing of twin's secrets on the remote: not in any process's environment or command line.
    const trainer = [...seen.values()].find((p) => p.command.includes("twin_trainer worker"));
    assert.ok(trainer, `the remote worker ran: ${[...seen.values()].map((p) => p.command).join("; ")}`);
    const password = decodeURIComponent(new URL(database.url).password);
    for (const { command, environ } of seen.values()) {
      const everything = `${command}\n${environ.join("\n")}`;
      for (const secret of [...Object.values(SECRETS), password]) {
        assert.ok(!everything.includes(secret), `a secret on the remote: ${command}`);
      }
      assert.ok(
        !/DATABASE_URL|PGPASSWORD|twin_worker_/.test(everything),
        `the role's login on the remote's command line or environment: ${command}`,
      );
      assert.ok(!everything.includes(HF_TOKEN), "HF_TOKEN goes on stdin, not in the environment");
    }
    assert.deepEqual(remote.processes(), [], "no remote process remains");
    assert.deepEqual(await workerRoles(), [], "no role remains");

    // The bot serves it: the served choice follows the active adapter, and it answers.
    const engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 1024,
      sequences: 1,
      threads: 1,
      sampling: { ...loadConfig({}).inference.sampling, seed: 1 },
      maxReplyTokens: 24,
    });
    try {
      const serving = createServing(
        { config: database.config, repositories: createRepositories(database) },
        engine,
      );
      await serving.refresh();
      assert.equal(serving.adapter()?.label, `adapter:${active?.id}`);
      const conversations = new Conversations(engine);
      const prompt = buildPrompt({
        header: "Telegram chat · Dr_Willis, ActionParsnip",
        history: [],
        live: [{ speaker: "Dr_Willis", messages: ["is the wifi fixed?"] }],
        replyAs: "ActionParsnip",
        maxTokens: 900,
        countTokens: engine.countTokens,
      });
      const reply = await conversations.reply("remote", prompt, serving.adapter(), { maxTokens: 24 });
      assert.ok(reply.generations >= 1, "the tuned model generated");
      await conversations.close();
    } finally {
      await engine.dispose();
    }
  });

  it("is offered by /train in the bot with its hardware and estimate, and the run it trains there answers", async () => {
    const owner: User = { id: 64232718, is_bot: false, first_name: "ActionParsnip" }; // the IRC fixture's owner
    const server = new BotApiServer(SECRETS.TWIN_BOT_TOKEN);
    await server.start();
    const engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 2048,
      sequences: 2,
      threads: 1,
      sampling: { ...loadConfig({}).inference.sampling, seed: 1 },
      maxReplyTokens: 24,
    });
    const logLines: string[] = [];
    const config = {
      ...database.config,
      dataDir: path.join(tmp, "bot"),
      bot: {
        ...database.config.bot,
        token: SECRETS.TWIN_BOT_TOKEN,
        ownerId: owner.id,
        apiRoot: server.apiRoot,
        progressEditMs: 200,
      },
      training: {
        ...database.config.training,
        configFile: "smollm2-135m-lora-cpu.yaml",
        overrides: OVERRIDES(4),
        staleSeconds: 10,
      },
    };
    const repositories = createRepositories(database);
    const remoteWorkers = new RemoteWorkers(
      [remote.url("remote")],
      {
        database,
        runs: repositories.runs,
        models: repositories.models,
        python: undefined,
        say: (line) => logLines.push(line),
      },
      {
        ssh: { configFile: remote.configFile, identity: undefined },
        idleExitMinutes: 0,
        maxHours: undefined,
        onIdle: undefined,
        purge: false,
        role: undefined,
        pipOptions: String(env.TWIN_REMOTE_PIP_OPTIONS),
        hfToken: undefined,
        staleSeconds: 10,
      },
    );
    const twin = await createTwinBot({
      config,
      database,
      conversations: new Conversations(engine),
      engine,
      countTokens: engine.countTokens,
      model: createServing({ config, repositories }, engine),
      remoteWorkers,
      log: createLog([SECRETS.TWIN_BOT_TOKEN], (line) => logLines.push(line)),
    });
    await twin.start();
    try {
      const texts = (method: string) => server.sent(method, owner.id).map((call) => String(call.params.text));
      server.sendMessage(owner, { text: "/train" });
      await server.waitFor(
        "the confirmation",
        () => texts("sendMessage").some((t) => t.includes("Start training?")),
        60_000,
      );
      const confirmation = server
        .sent("sendMessage", owner.id)
        .find((c) => String(c.params.text).includes("Start training?")) as ApiCall;
      assert.match(
        String(confirmation.params.text),
        /Or on a machine reached over SSH \(LoRA\):\nremote \(CPU\): /,
      );
      const buttons = (confirmation.params.reply_markup?.inline_keyboard ?? []).flat() as {
        text: string;
        callback_data: string;
      }[];
      const button = buttons.find((b) => b.text === "Train on remote (CPU)");
      assert.ok(button, `a button for the remote among ${buttons.map((b) => b.text).join(", ")}`);
      server.pressButton(
        owner,
        button.callback_data,
        (confirmation as ApiCall & { result?: Message }).result as Message,
      );
      await server.waitFor("the queued run", () =>
        texts("editMessageText").some((t) => /Queued as run \d+; remote sets up and trains it/.test(t)),
      );
      const runId = Number(
        /Queued as run (\d+)/.exec(texts("editMessageText").find((t) => /Queued as run/.test(t)) ?? "")?.[1],
      );
      assert.equal((await repositories.runs.get(runId))?.target, "remote:remote");
      await server
        .waitFor(
          "the finished run",
          () => texts("editMessageText").some((t) => t.startsWith(`Training run ${runId}: done`)),
          300_000,
        )
        .catch((error: Error) => {
          throw new Error(`${error.message}\n${logLines.slice(-15).join("\n")}`);
        });
      const active = await repositories.runs.activeAdapter();
      assert.equal(active?.runId, runId);
      assert.equal(twin.services.model.adapter()?.label, `adapter:${active?.id}`, "the bot serves it");
      // The owner talks to the twin: the answer comes from the adapter trained over there.
      const asked = server.sent("sendMessage", owner.id).length;
      server.sendMessage(owner, { text: "/talk ubottu" });
      await server.waitFor(
        "talking to ubottu",
        () => server.sent("sendMessage", owner.id).length > asked,
        30_000,
      );
      const before = server.sent("sendMessage", owner.id).length;
      server.sendMessage(owner, { text: "how do I fix my wifi?" });
      await server.waitFor(
        "the tuned model's answer",
        () => server.sent("sendMessage", owner.id).length > before,
        120_000,
      );
      const { rows } = await database.pool.query<{ served_by: string }>(
        "SELECT served_by FROM bot_messages WHERE from_twin AND served_by IS NOT NULL ORDER BY id DESC LIMIT 1",
      );
      assert.deepEqual(rows, [{ served_by: `adapter:${active?.id}` }]);
    } finally {
      await twin.stop();
      await engine.dispose();
      await server.close();
    }
  });

  it("refuses a changed host key, a failed login and a machine without Python, each saying so", async () => {
    const cases: [Parameters<SshRemote["url"]>[0], RegExp][] = [
      ["remote-changed-key", /host key has changed/],
      ["remote-wrong-identity", /refused the login \(authentication failed\)/],
      ["remote-nopython", /no Python ≥ 3\.11 found/],
    ];
    for (const [alias, message] of cases) {
      const worker = startWorker(remote.url(alias));
      const code = await worker.exited;
      assert.notEqual(code, 0, alias);
      assert.match(worker.output(), message, alias);
    }
    assert.deepEqual(await workerRoles(), [], "no role was made");
  });
});
