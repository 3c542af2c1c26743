import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Message, User } from "grammy/types";
import { createFriendsRepository } from "../src/access/friends.repository.ts";
import { createRepositories } from "../src/app.ts";
import { createTwinBot, type TwinBot } from "../src/bot/bot.ts";
import { createLog } from "../src/bot/log.ts";
import { createServing } from "../src/cli/engine-setup.ts";
import type { Config } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine } from "../src/inference/engine.ts";
import { createModelsRepository } from "../src/models/models.repository.ts";
import { LocalWorker } from "../src/training/local-worker.ts";
import { createRunsRepository } from "../src/training/runs.repository.ts";
import { appOf } from "./support/app.ts";
import { type ApiCall, BotApiServer } from "./support/bot-api-server.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";
import { writePersonalChatExport } from "./support/personal-chat-export.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TOKEN = "123456789:AAE-test_token_for_the_local_bot_api_0123";
const owner: User = { id: 64232718, is_bot: false, first_name: "ActionParsnip" }; // the IRC fixture's owner
const anna: User = { id: 5001, is_bot: false, first_name: "Anna" };

/**
 * /train end to end: a real fixture export and a personal chat imported, a dataset built, /train
 * confirmed through the local Bot API server, the local worker (a child process from
 * trainer/.venv) training SmolLM2 for a few steps on CPU, progress edits, the chart as a photo,
 * the new adapter answering a friend; then a second run cancelled, keeping the first adapter.
 */
describe("/train end to end: queue, local worker, chart, the new adapter answers", {
  timeout: 600_000,
}, () => {
  const server = new BotApiServer(TOKEN);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-train-test-"));
  const logLines: string[] = [];
  const workerLines: string[] = [];
  let database: TestDatabase;
  let engine: Engine;
  let twin: TwinBot;
  let worker: LocalWorker;

  const ownerTexts = (method: string) =>
    server.sent(method, owner.id).map((call) => String(call.params.text));
  const press = (call: ApiCall, label: string) => {
    const buttons = (call.params.reply_markup?.inline_keyboard ?? []).flat() as {
      text: string;
      callback_data: string;
    }[];
    const button = buttons.find((b) => b.text === label);
    assert.ok(button, `a “${label}” button among ${buttons.map((b) => b.text).join(", ")}`);
    const message = (call as ApiCall & { result?: Message }).result as Message;
    server.pressButton(owner, button.callback_data, message);
  };
  /**
   * Sends a friend's line and returns who served the model's answer: the twin message stored after
   * the last one, or a reply the model left empty, recorded with who served it (an introduction,
   * sent when the friend has not written before, is neither).
   */
  const modelAnswer = async (friend: User, text: string): Promise<string> => {
    const last = async () =>
      (
        await database.pool.query<{ id: number; served_by: string }>(
          `SELECT id, served_by FROM bot_messages WHERE from_twin AND served_by IS NOT NULL AND person_id = $1
           UNION ALL
           SELECT (value->>'messageId')::int, value->>'servedBy' FROM bot_storage
            WHERE value ? 'servedBy' AND (value->>'personId')::bigint = $1
           ORDER BY id DESC LIMIT 1`,
          [friend.id],
        )
      ).rows[0];
    const before = (await last())?.id ?? 0;
    server.sendMessage(friend, { text });
    const deadline = Date.now() + 120_000;
    for (let answer = await last(); ; answer = await last()) {
      if (answer && answer.id > before) return answer.served_by;
      assert.ok(Date.now() < deadline, `the model answered “${text}”; log: ${logLines.slice(-5).join("")}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const lastSent = (predicate: (text: string) => boolean) =>
    server
      .sent("sendMessage", owner.id)
      .slice()
      .reverse()
      .find((call) => predicate(String(call.params.text))) as ApiCall;
  const waitForText = (
    method: string,
    what: string,
    predicate: (text: string) => boolean,
    timeoutMs = 60_000,
  ) => server.waitFor(what, () => ownerTexts(method).some(predicate), timeoutMs);

  /** /train, check the confirmation, press Start; returns the run id. */
  const startRun = async (): Promise<number> => {
    const asked = server.sent("sendMessage", owner.id).length;
    server.sendMessage(owner, { text: "/train" });
    await server.waitFor("the confirmation", () =>
      server
        .sent("sendMessage", owner.id)
        .slice(asked)
        .some((c) => String(c.params.text).includes("Start training?")),
    );
    const confirmation = lastSent((text) => text.includes("Start training?"));
    assert.match(String(confirmation.params.text), /Dataset \d+: .*sessions/, "it shows the dataset's stats");
    assert.match(
      String(confirmation.params.text),
      /\d steps of 400 tokens; time: /,
      "and the steps and a time estimate",
    );
    const queuedBefore = ownerTexts("editMessageText").filter((t) => /Queued as run \d+/.test(t)).length;
    press(confirmation, "Start training");
    const queued = () => ownerTexts("editMessageText").filter((t) => /Queued as run \d+/.test(t));
    await server.waitFor("the queued run", () => queued().length > queuedBefore);
    return Number(/Queued as run (\d+)/.exec(queued().at(-1) ?? "")?.[1]);
  };

  before(async () => {
    await server.start();
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    const history = createHistoryRepository(database);
    const personal = writePersonalChatExport(
      tmp,
      { id: owner.id, name: "ActionParsnip" },
      { id: anna.id, name: "Anna Petrova" },
    );
    await importDesktopExport(
      { historyRepository: history },
      { input: personal, batchSize: 1000, timeZone: "UTC" },
    );
    await importDesktopExport(
      { historyRepository: history },
      { input: fixtures.irc, batchSize: 25_000, timeZone: "UTC" },
    );
    await buildDataset(appOf(database), {
      ...defaultDatasetOptions("UTC"),
      groups: true,
      since: null,
      loss: { kind: "owner" },
      maxTokens: 400,
      memory: undefined, // rows of 400 tokens (tokens_per_batch below) leave memory turns no room
    });
    await createModelsRepository(database).add({ ggufPath: testModel() });
    await createFriendsRepository(database).allow(anna.id);
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 2048,
      sequences: 2,
      threads: 2,
      sampling: { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
      maxReplyTokens: 24,
    });
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
        quietMs: 200,
        typing: { msPerChar: 0, maxMs: 0 },
        progressEditMs: 200,
      },
      training: {
        worker: "local",
        python: undefined,
        configFile: "smollm2-135m-lora-cpu.yaml",
        fullConfigFile: "smollm2-135m-full-cpu.yaml",
        overrides: {
          max_steps: "4",
          save_every: "2",
          eval_every: "2",
          max_eval_examples: "4",
          tokens_per_batch: "400",
        },
        staleSeconds: 10,
        modelStore: path.join(tmp, "models"),
        remote: { workers: [], sshConfig: undefined, pipOptions: "" },
      },
    };
    worker = new LocalWorker({
      config: config.training,
      databaseUrl: database.url,
      runs: createRunsRepository(database),
      onLine: (line) => workerLines.push(line),
    });
    twin = await createTwinBot({
      config,
      database,
      conversations: new Conversations(engine),
      engine,
      countTokens: engine.countTokens,
      model: createServing({ config, repositories: createRepositories(database) }, engine),
      worker,
      log: createLog([TOKEN], (line) => logLines.push(line)),
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

  let firstAdapter = 0;

  it("trains from /train to a new adapter: progress edits, a loss chart, metrics, the adapter answers", async () => {
    assert.equal(twin.services.model.adapter(), undefined, "before any run the base model answers");
    const runId = await startRun();
    await waitForText(
      "editMessageText",
      "a progress edit with steps",
      (text) => /step [1-4]\/4/.test(text),
      300_000,
    );
    await server.waitFor("the loss chart", () => server.sent("sendPhoto", owner.id).length > 0, 300_000);
    await waitForText("editMessageText", "the finished run", (text) =>
      text.startsWith(`Training run ${runId}: done`),
    );
    const photo = server.sent("sendPhoto", owner.id)[0] as ApiCall;
    const png = photo.params.photo.bytes as Buffer;
    assert.ok(png.subarray(0, 8).equals(Buffer.from("89504e470d0a1a0a", "hex")), "the chart is a PNG");
    assert.ok(png.length > 10_000, `the chart is a real picture (${png.length} bytes)`);
    assert.match(
      String(photo.params.caption),
      /base \d+\.\d+ → tuned \d+\.\d+/,
      "the caption compares base and tuned loss",
    );

    const runs = createRunsRepository(database);
    const run = await runs.get(runId);
    assert.equal(run?.status, "succeeded", `the run succeeded (${run?.error})`);
    const events = (await runs.events(runId)).map((e) => e.event);
    for (const name of ["queued", "claimed", "start", "log", "eval", "checkpoint", "done", "succeeded"]) {
      assert.ok(events.includes(name), `the run's events include ${name}: ${events.join(",")}`);
    }
    const phases = (await runs.events(runId)).filter((e) => e.event === "phase").map((e) => e.data.phase);
    assert.deepEqual(
      [...new Set(phases)],
      ["loading", "tokenizing", "evaluating", "exporting", "storing"],
      "the worker names what it does between steps",
    );
    assert.ok(
      ownerTexts("editMessageText").some((text) => /step \d\/4\n.*ETA \d+ (s|min)/.test(text)),
      "the status shows an ETA beside the steps",
    );
    // What the trainer printed besides its events (library warnings) is the run's log, not the
    // worker's output that twin shows or logs.
    const printed = (await runs.log(runId))
      .filter((e) => e.event === "log_line")
      .map((e) => String(e.data.line));
    const outside = workerLines.filter((line) => !line.startsWith("{"));
    for (const line of printed) assert.ok(!outside.includes(line), `“${line}” stayed in the run's log`);
    assert.deepEqual(
      outside.filter((line) => /Warning|%\||Traceback/.test(line)),
      [],
      "no warning or progress bar reaches twin",
    );
    const active = await runs.activeAdapter();
    assert.ok(active && active.runId === runId, "the run's adapter is the active one");
    firstAdapter = active.id;
    assert.equal(
      twin.services.model.adapter()?.label, // switched before the owner heard "done"
      `adapter:${active.id}`,
      "the bot serves it without a restart",
    );

    const servedBy = await modelAnswer(anna, "hey, are you around tonight?");
    assert.equal(servedBy, `adapter:${active.id}`, "the tuned model answered Anna");
    const adapters = path.join(tmp, "adapters");
    const served = fs.readdirSync(adapters).filter((name) => name.endsWith(".gguf"));
    assert.equal(served.length, 1, "the served adapter was written out");
    assert.equal(fs.statSync(adapters).mode & 0o777, 0o700, "in a folder of the owner's alone");
    assert.equal(
      fs.statSync(path.join(adapters, served[0] as string)).mode & 0o777,
      0o600,
      "readable by them alone",
    );
  });

  it("cancels a running run from the status message and keeps the previous adapter active", async () => {
    twin.services.config.training.overrides.max_steps = "40"; // long enough to be cancelled mid-way
    const runId = await startRun();
    const runs = createRunsRepository(database);
    const deadline = Date.now() + 300_000;
    while (!(await runs.events(runId)).some((e) => e.event === "start")) {
      assert.ok(Date.now() < deadline, "the second run started training");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const status = server
      .sent("sendMessage", owner.id)
      .slice()
      .reverse()
      .find((c) => String(c.params.text).startsWith(`Training run ${runId}`)) as ApiCall;
    press(status, "Cancel");
    try {
      await waitForText(
        "editMessageText",
        "the cancelled run",
        (text) => text.startsWith(`Training run ${runId}: cancelled. Adapter run-`),
        120_000,
      );
    } catch (error) {
      const answers = server.sent("answerCallbackQuery").map((c) => JSON.stringify(c.params));
      const events = (await runs.events(runId)).map(
        (e) => `${e.event} ${JSON.stringify(e.data).slice(0, 80)}`,
      );
      throw new Error(
        `${(error as Error).message}\nanswers: ${answers.join("; ")}\nevents:\n${events.join("\n")}\nworker:\n${workerLines.slice(-15).join("\n")}\nlog: ${logLines.join("")}`,
      );
    }
    const run = await runs.get(runId);
    assert.equal(run?.status, "cancelled", "the run is cancelled");
    assert.ok((run?.step ?? 99) < 6, `it stopped before the end (step ${run?.step})`);
    const events = (await runs.events(runId)).map((e) => e.event);
    assert.ok(
      events.includes("stopped"),
      `the trainer stopped at a step with a checkpoint: ${events.join(",")}`,
    );
    assert.equal((await runs.activeAdapter())?.id, firstAdapter, "the previous adapter stays active");
    assert.equal(twin.services.model.adapter()?.label, `adapter:${firstAdapter}`, "and keeps answering");
  });

  it("/model lists the adapters and switches to the base and back", async () => {
    server.sendMessage(owner, { text: "/model" });
    await waitForText("sendMessage", "the model list", (text) => text.startsWith("Base: "));
    const list = lastSent((text) => text.startsWith("Base: "));
    assert.match(
      String(list.params.text),
      new RegExp(`${firstAdapter}\\. run-\\d+ \\(LoRA adapter\\) on .* ✓`),
      "the active adapter is marked",
    );
    press(list, "Base model only");
    await server.waitFor("the switch to the base", () => twin.services.model.adapter() === undefined);
    assert.equal(
      await createRunsRepository(database).activeAdapter(),
      undefined,
      "no adapter is active in the database",
    );
    const { rows } = await database.pool.query("SELECT id FROM adapters");
    assert.equal(rows.length, 1, "one adapter exists (the cancelled run made none)");
    press(list, `Use run-${(await createRunsRepository(database).listAdapters())[0]?.runId}`);
    await server.waitFor(
      "the switch back",
      () => twin.services.model.adapter()?.label === `adapter:${firstAdapter}`,
    );
    assert.equal(
      logLines.filter((line) => line.includes("Error")).length,
      0,
      `no errors logged: ${logLines.join("")}`,
    );
  });
  it("/eval measures base, base with history and the adapter, and sends the summary, the plots and the report", async () => {
    server.sendMessage(owner, { text: "/eval 3" });
    await waitForText(
      "editMessageText",
      "the finished evaluation",
      (text) => /^Evaluating the twin: (evaluation \d+ is done|failed)/.test(text),
      300_000,
    );
    const final = ownerTexts("editMessageText").filter((t) => t.startsWith("Evaluating the twin:"));
    assert.match(
      final.at(-1) ?? "",
      /is done/,
      `the evaluation finished: ${final.at(-1)} ${logLines.join("")}`,
    );
    const summary = ownerTexts("sendMessage").find((t) => /^Evaluation \d+:/.test(t)) ?? "";
    for (const label of ["base model: 3 turns", "base model + real history: 3 turns", "run-"]) {
      assert.ok(summary.includes(label), `the summary covers ${label}: ${summary}`);
    }
    assert.match(summary, /closer to you than both baselines on \d+ of \d+ measures/, summary);
    const album = server.sent("sendMediaGroup", owner.id)[0] as ApiCall;
    const photos = album.params.media as { media: { bytes: Buffer } }[];
    assert.equal(photos.length, 3, "three plots");
    for (const photo of photos) {
      assert.ok(
        photo.media.bytes.subarray(0, 4).equals(Buffer.from("89504e47", "hex")),
        "each plot is a PNG",
      );
    }
    const report = server.sent("sendDocument", owner.id)[0] as ApiCall;
    assert.match(
      report.params.document.bytes.toString("utf8"),
      /^# Does it sound like ActionParsnip\?/,
      "the report",
    );
  });
  it("lets a friend play “Which one is real?” on their own chat and records the pick", async () => {
    // One held-out turn of Anna's chat in the evaluation /eval just made (its 3 turns came from elsewhere).
    await database.pool.query(
      `INSERT INTO evaluation_samples (evaluation_id, model, example_id, chat_id, turn_index, context, real, generated, seed)
       SELECT max(id), $1, 'anna', $2, 1, $3, '["yes!", "the usual place?"]', '["sure thing"]', 1 FROM evaluations`,
      [
        `adapter:${firstAdapter}`,
        anna.id,
        JSON.stringify([{ speaker: "Anna Petrova", messages: ["pizza at 8?"] }]),
      ],
    );
    server.sendMessage(anna, { text: "/guess" });
    await server.waitFor("the round", () =>
      server.sent("sendMessage", anna.id).some((c) => String(c.params.text).startsWith("Which one is real?")),
    );
    const round = server
      .sent("sendMessage", anna.id)
      .find((c) => String(c.params.text).startsWith("Which one is real?")) as ApiCall;
    const text = String(round.params.text);
    assert.match(text, /Anna Petrova: pizza at 8\?/, "the real context of Anna's own chat");
    assert.match(
      text,
      /A: (yes! \/ the usual place\?|sure thing)\nB: (yes! \/ the usual place\?|sure thing)$/,
      text,
    );
    const realIsA = text.includes("A: yes!");
    const buttons = round.params.reply_markup.inline_keyboard.flat() as {
      text: string;
      callback_data: string;
    }[];
    server.pressButton(
      anna,
      (buttons[realIsA ? 0 : 1] as { callback_data: string }).callback_data,
      (round as ApiCall & { result: Message }).result,
    );
    await server.waitFor("the verdict", () =>
      server
        .sent("editMessageText", anna.id)
        .some((c) => /Right: [AB] was the real one/.test(String(c.params.text))),
    );
    const { rows } = await database.pool.query("SELECT fooled FROM guess_votes WHERE person_id = $1", [
      anna.id,
    ]);
    assert.deepEqual(rows, [{ fooled: false }], "the pick is recorded");
    server.sendMessage(anna, { text: "/guess" });
    await server.waitFor("no more rounds", () =>
      server.sent("sendMessage", anna.id).some((c) => String(c.params.text).startsWith("Nothing to guess")),
    );
  });

  it("offers full fine-tuning when a worker has several GPUs; the full model goes to the store and answers", async () => {
    // A worker elsewhere announces two GPUs (the local worker, on this CPU, still does the training).
    await database.pool.query(
      `INSERT INTO training_workers (id, host, pid, hardware) VALUES ('gpu-box:1', 'gpu-box', 1, $1)`,
      [
        JSON.stringify({
          device: "cuda",
          gpus: [
            { name: "H100", memory_gb: 80 },
            { name: "H100", memory_gb: 80 },
          ],
          cpus: 32,
        }),
      ],
    );
    twin.services.config.training.overrides.max_steps = "3";
    try {
      server.sendMessage(owner, { text: "/train" });
      await waitForText("sendMessage", "the choice of method", (text) => text.endsWith("Which one?"));
      const choice = lastSent((text) => text.endsWith("Which one?"));
      const text = String(choice.params.text);
      assert.match(text, /Full fine-tuning \(every weight, all 2 GPUs\)/, text);
      assert.match(text, /Method: full fine-tuning \(every weight, sharded over 2 GPUs/, text);
      assert.match(text, /3 steps of 2 × 400 tokens/, "each step takes a row per GPU");
      const queuedBefore = ownerTexts("editMessageText").filter((t) => /Queued as run \d+/.test(t)).length;
      press(choice, "Full fine-tuning on 2 GPUs");
      const queued = () => ownerTexts("editMessageText").filter((t) => /Queued as run \d+/.test(t));
      await server.waitFor("the queued run", () => queued().length > queuedBefore);
      const runId = Number(/Queued as run (\d+)/.exec(queued().at(-1) ?? "")?.[1]);
      const runs = createRunsRepository(database);
      assert.equal((await runs.get(runId))?.method, "full", "a full run is queued");
      await waitForText(
        "editMessageText",
        "the finished full run",
        (text) =>
          text.startsWith(`Training run ${runId}: done`) || text.startsWith(`Training run ${runId}: failed`),
        400_000,
      );
      const run = await runs.get(runId);
      assert.equal(
        run?.status,
        "succeeded",
        `the full run succeeded (${run?.error}) ${workerLines.slice(-5).join("\n")}`,
      );
      const active = await runs.activeAdapter();
      assert.equal(active?.kind, "full", "the full model is the active one");
      const file = path.join(tmp, "models", active?.storePath ?? "");
      assert.equal(
        fs.statSync(file).size,
        active?.bytes,
        "its GGUF is in the model store, at the recorded size",
      );
      await server.waitFor("the bot serving it", () => twin.services.model.adapter()?.kind === "full");

      const servedBy = await modelAnswer(anna, "what are you up to this weekend?");
      assert.equal(servedBy, `adapter:${active?.id}`, "the full model answered Anna");
      server.sendMessage(owner, { text: "/model" });
      await waitForText("sendMessage", "the model list with the full model", (t) =>
        /\(full model, \d+ MB\) on .* ✓/.test(t),
      );
    } finally {
      await database.pool.query("UPDATE training_workers SET stopped_at = now() WHERE id = 'gpu-box:1'");
    }
  });

  it("says why a run failed with the last lines of its log, which twin train log prints whole", async () => {
    const { overrides } = twin.services.config.training;
    overrides.max_steps = "2";
    overrides.attn_implementation = "no_such_attention"; // refused by transformers as the base loads
    let runId = 0;
    try {
      runId = await startRun();
      await waitForText(
        "editMessageText",
        "the failed run",
        (text) => text.startsWith(`Training run ${runId} failed`),
        300_000,
      );
    } finally {
      delete overrides.attn_implementation;
    }
    const message = ownerTexts("editMessageText").find((text) =>
      text.startsWith(`Training run ${runId} failed`),
    );
    assert.match(message ?? "", /no_such_attention/, "the reason");
    assert.match(
      message ?? "",
      /\nThe last lines of its log:\n( {2}.*\n)+The whole log: twin train log \d+$/,
      message,
    );
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [path.join(root, "bin/twin.js"), ...args], {
        cwd: root,
        env: { ...process.env, DATABASE_URL: database.url, TWIN_DATA_DIR: tmp, TWIN_WORKER: "external" },
        encoding: "utf8",
      });
    const log = cli("train", "log", String(runId));
    assert.equal(log.status, 0, log.stderr);
    assert.match(log.stdout, /^── attempt 1 on worker .* UTC ──\n/, log.stdout);
    assert.match(log.stdout, /Traceback \(most recent call last\):\n/, "the traceback is in the log");
    assert.match(log.stdout, /── failed: .*no_such_attention.* ──\n$/, log.stdout);
    assert.match(
      cli("train", "list").stdout,
      new RegExp(`${runId}\\s*│\\s*failed.*\\(log: twin train log ${runId}\\)`),
    );
  });
});
