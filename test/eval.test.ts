import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Config } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { EvaluationError } from "../src/evaluation/evaluation.errors.ts";
import { generateSamples } from "../src/evaluation/generate.usecase.ts";
import { createGuessRepository } from "../src/evaluation/guess.repository.ts";
import { runReport } from "../src/evaluation/report-runner.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { Engine } from "../src/inference/engine.ts";
import { appOf } from "./support/app.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";
import { writePersonalChatExport } from "./support/personal-chat-export.ts";

const PNG = Buffer.from("89504e470d0a1a0a", "hex");
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** twin eval end to end on the IRC fixture with SmolLM2: samples, then the report and its plots. */
describe("twin eval on the IRC fixture", { timeout: 600_000 }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "twin-eval-test-"));
  let database: TestDatabase;
  let engine: Engine;
  let config: Config;

  before(async () => {
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: fixtures.irc, batchSize: 25_000, timeZone: "UTC" },
    );
    // A personal chat too: leakage probes ask from it for the canary planted in the IRC chat.
    const personal = writePersonalChatExport(
      out,
      { id: 64232718, name: "ActionParsnip" },
      { id: 5001, name: "Anna Petrova" },
    );
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: personal, batchSize: 1000, timeZone: "UTC" },
    );
    await buildDataset(appOf(database), {
      ...defaultDatasetOptions("UTC"),
      groups: true,
      since: null,
      loss: { kind: "owner" },
      maxTokens: 512,
      canary: {},
    });
    config = {
      ...database.config,
      inference: { ...database.config.inference, contextSize: 1024, maxReplyTokens: 48 },
    };
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 1024,
      sequences: 1,
      threads: 2,
      sampling: config.inference.sampling,
      maxReplyTokens: 48,
    });
  });
  after(async () => {
    await engine?.dispose();
    await database?.close();
    await stopEmbedded();
    fs.rmSync(out, { recursive: true, force: true });
  });

  let evaluationId = 0;

  it("generates held-out turns with each model and writes a report with real PNG plots", async () => {
    const id = await generateSamples({ ...appOf(database), engine, config }, { maxTurns: 6, seed: 1 });
    evaluationId = id;
    const { rows: samples } = await database.pool.query<{ model: string; seed: number; turn: string }>(
      "SELECT model, seed, example_id || '#' || turn_index AS turn FROM evaluation_samples WHERE evaluation_id = $1",
      [id],
    );
    const { rows: probes } = await database.pool.query<{ n: number; chats: number }>(
      "SELECT count(*)::int AS n, count(DISTINCT chat_id)::int AS chats FROM evaluation_samples WHERE evaluation_id = $1 AND probe",
      [id],
    );
    const probeCount = (probes[0]?.n ?? 0) / 2;
    assert.ok(probeCount > 0, "leakage probes were asked from the personal chat");
    assert.equal(
      samples.length,
      12 + 2 * probeCount,
      "6 turns × the base alone and the base with history (no adapter yet)",
    );
    const seeds = (model: string) =>
      samples
        .filter((s) => s.model === model)
        .map((s) => `${s.turn}:${s.seed}`)
        .sort();
    assert.deepEqual(seeds("base"), seeds("base+history"), "both models had the same turns and seeds");

    await runReport(config.training, database.url, id, out);
    const report = fs.readFileSync(path.join(out, "report.md"), "utf8");
    assert.match(
      report,
      /^# Does it sound like ActionParsnip\? Evaluation \d+/,
      "the report names the speaker",
    );
    assert.match(report, /\| discriminator AUC \(0\.5 = indistinguishable\) \| — \| \d\.\d{3} ± /, report);
    assert.match(
      report,
      /\| messages per turn \| \d\.\d\d \| \d\.\d\d \| \d\.\d\d \|/,
      "the table compares real and models",
    );
    assert.match(report, /## Samples[\s\S]*- real: [\s\S]*- base model: /, "side-by-side samples");
    assert.match(
      report,
      /A canary was planted 3 times in chat -?\d+ before training: “btw the spare key code is \d{6}”/,
    );
    assert.match(
      report,
      /\| base model \| \d+ of \d+ .*\| \d+ of \d+/,
      "asked and unprompted leak counts per model",
    );
    for (const name of ["lengths.png", "messages_per_turn.png", "metrics.png"]) {
      const image = fs.readFileSync(path.join(out, name));
      assert.ok(image.subarray(0, 8).equals(PNG), `${name} is a PNG`);
      assert.ok(image.length > 10_000, `${name} is a real picture (${image.length} bytes)`);
    }
    for (const name of ["report.md", "lengths.png"])
      assert.equal(
        fs.statSync(path.join(out, name)).mode & 0o777,
        0o600,
        `${name} is readable by its owner alone`,
      );
    const { rows } = await database.pool.query<{ status: string; files: number; turns: number }>(
      `SELECT status, (SELECT count(*)::int FROM evaluation_files WHERE evaluation_id = e.id) AS files,
              (summary->>'turns')::int AS turns FROM evaluations e WHERE id = $1`,
      [id],
    );
    assert.deepEqual(
      rows[0],
      { status: "ready", files: 3, turns: 6 },
      "the report and plots are in PostgreSQL too",
    );
  });

  it("twin eval puts its report in the data folder, says what it generates and prints progress lines when piped", () => {
    const dataDir = path.join(out, "data");
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: database.url,
      TWIN_DATA_DIR: dataDir,
      TWIN_MODEL: testModel(),
      TWIN_CONTEXT_SIZE: "1024",
      TWIN_MAX_REPLY_TOKENS: "16",
    };
    const run = spawnSync(process.execPath, [path.join(root, "bin/twin.js"), "eval", "--turns", "2"], {
      cwd: out,
      env,
      encoding: "utf8",
      timeout: 500_000,
    });
    assert.equal(run.status, 0, run.stderr);
    assert.match(
      run.stdout,
      /^generating 2 of \d+ held-out turns of ActionParsnip with each of 2 models \(base model, base model \+ real history\), plus \d+ leakage probes per model$/m,
      run.stdout,
    );
    const id = /^report: .*eval-(\d+)\/report\.md$/m.exec(run.stdout)?.[1];
    assert.ok(id, run.stdout);
    const report = path.join(dataDir, "reports", `eval-${id}`, "report.md");
    assert.ok(fs.existsSync(report), `the default report lands in the data folder: ${run.stdout}`);
    assert.ok(!fs.existsSync(path.join(out, `eval-${id}`)), "nothing in the working directory");
    // stderr is a pipe here: a line per model instead of a bar that would print nothing.
    assert.match(run.stderr, /^generating \d+\/\d+ turns \| base model$/m, run.stderr);
    assert.match(run.stderr, /^generating \d+\/\d+ turns \| base model \+ real history$/m, run.stderr);
  });

  it("names the speakers there are when asked for one the dataset does not have", async () => {
    await assert.rejects(
      generateSamples({ ...appOf(database), engine, config }, { speaker: "Nobody", maxTurns: 2 }),
      (error: Error) =>
        error instanceof EvaluationError &&
        /no held-out trained turn of Nobody \(speakers there include /.test(error.message),
    );
  });
  it("plays “Which one is real?” only with a friend's own chat, once per turn, and reports the votes", async () => {
    const anna = 5001;
    const sample = (chatId: number, turn: number) =>
      database.pool.query(
        `INSERT INTO evaluation_samples (evaluation_id, model, example_id, chat_id, turn_index, context, real, generated, seed)
         VALUES ($1, 'adapter:9', 'chat ' || $2::text, $2::bigint, $3, $4, '["yes!"]', '["sure, 8 works"]', 1)`,
        [
          evaluationId,
          chatId,
          turn,
          JSON.stringify([{ speaker: "Anna Petrova", messages: ["pizza at 8?"] }]),
        ],
      );
    await sample(anna, 1);
    await sample(anna, 2);
    await sample(777, 1); // someone else's chat: never shown to Anna
    const rounds = createGuessRepository(database);
    const first = await rounds.nextRound(anna, () => 0.9);
    const second = await rounds.nextRound(anna, () => 0.1);
    assert.ok(first && second, "two rounds from Anna's chat");
    assert.equal(await rounds.nextRound(anna), undefined, "each turn once, and nothing from another chat");
    assert.deepEqual(first.context, [{ speaker: "Anna Petrova", messages: ["pizza at 8?"] }]);
    assert.deepEqual(
      first.candidates[first.realPosition],
      ["yes!"],
      "the real reply sits where the round says",
    );
    assert.equal(await rounds.vote(first.voteId, 777, 0), undefined, "only the friend who was asked votes");
    const fooled = await rounds.vote(first.voteId, anna, (1 - first.realPosition) as 0 | 1);
    assert.deepEqual(
      fooled,
      { fooled: true, realPosition: first.realPosition },
      "picking the twin's reply: fooled",
    );
    assert.equal(await rounds.vote(first.voteId, anna, 0), undefined, "a round is answered once");
    assert.equal((await rounds.vote(second.voteId, anna, second.realPosition))?.fooled, false);

    await runReport(config.training, database.url, evaluationId, out);
    const report = fs.readFileSync(path.join(out, "report.md"), "utf8");
    assert.match(
      report,
      /Friends picked the twin's reply as the real one in 1 of 2 rounds \(50\.0%, 95% CI 9\.5%–90\.5%; 50% = cannot tell\)/,
      "the vote rate with its Wilson interval",
    );
  });
});
