import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Config } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { EvaluationError, generateSamples } from "../src/evaluation/generate.usecase.ts";
import { runReport } from "../src/evaluation/report-runner.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { Engine } from "../src/inference/engine.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";

const PNG = Buffer.from("89504e470d0a1a0a", "hex");

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
    await buildDataset(database, {
      ...defaultDatasetOptions("UTC"),
      groups: true,
      since: null,
      loss: { kind: "owner" },
      maxTokens: 512,
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

  it("generates held-out turns with each model and writes a report with real PNG plots", async () => {
    const id = await generateSamples({ database, engine, config }, { maxTurns: 6, seed: 1 });
    const { rows: samples } = await database.pool.query<{ model: string; seed: number; turn: string }>(
      "SELECT model, seed, example_id || '#' || turn_index AS turn FROM evaluation_samples WHERE evaluation_id = $1",
      [id],
    );
    assert.equal(samples.length, 12, "6 turns × the base alone and the base with history (no adapter yet)");
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
    for (const name of ["lengths.png", "messages_per_turn.png", "metrics.png"]) {
      const image = fs.readFileSync(path.join(out, name));
      assert.ok(image.subarray(0, 8).equals(PNG), `${name} is a PNG`);
      assert.ok(image.length > 10_000, `${name} is a real picture (${image.length} bytes)`);
    }
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

  it("names the speakers there are when asked for one the dataset does not have", async () => {
    await assert.rejects(
      generateSamples({ database, engine, config }, { speaker: "Nobody", maxTurns: 2 }),
      (error: Error) =>
        error instanceof EvaluationError &&
        /no held-out trained turn of Nobody \(speakers there include /.test(error.message),
    );
  });
});
