import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { joinSegments } from "../src/dataset/chatml.ts";
import { createDatasetRepository } from "../src/dataset/dataset.repository.ts";
import { estimateTokens } from "../src/dataset/length.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { appOf } from "./support/app.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const python = path.join(root, "trainer/.venv/bin/python");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-length-test-"));

/**
 * --max-tokens promises every example fits in real tokens of the base model's tokenizer (the
 * trainer refuses a dataset whose examples exceed tokens_per_batch). The IRC fixture is full of
 * what BPE serves worst: digits (one token each in SmolLM2), IPs, paths, pasted output.
 */
describe("dataset length: every example fits --max-tokens in the trainer's tokens", {
  timeout: 120_000,
}, () => {
  let database: TestDatabase;

  before(async () => {
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: fixtures.irc, timeZone: "UTC", batchSize: 5000 },
    );
  });
  after(async () => {
    await database.close();
    await stopEmbedded();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("builds the IRC dataset at --max-tokens 256 and 512 with no example over the limit", async () => {
    const built: { maxTokens: number; id: string; text: string }[] = [];
    for (const maxTokens of [256, 512]) {
      const result = await buildDataset(appOf(database), {
        ...defaultDatasetOptions("UTC"),
        groups: true,
        since: null,
        maxTokens,
        memory: undefined, // --max-tokens is the conversation's limit; the memory turn's is its own
      });
      const examples = await createDatasetRepository(database).examples(result.datasetId);
      assert.ok(examples.length > 0);
      for (const example of examples)
        built.push({ maxTokens, id: example.id, text: joinSegments(example.segments) });
    }
    fs.writeFileSync(path.join(scratch, "texts.json"), JSON.stringify(built.map((b) => b.text)));
    execFileSync(
      python,
      [
        path.join(root, "test/support/tokenize_texts.py"),
        testModel(),
        path.join(scratch, "texts.json"),
        path.join(scratch, "tokens.json"),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const tokens: number[][] = JSON.parse(fs.readFileSync(path.join(scratch, "tokens.json"), "utf8")).trainer;
    const over = built
      .map((b, i) => ({ ...b, real: (tokens[i] as number[]).length, estimate: estimateTokens(b.text) }))
      .filter((b) => b.real > b.maxTokens);
    assert.deepEqual(
      over.map(({ maxTokens, id, real, estimate }) => ({ maxTokens, id, real, estimate })),
      [],
      `examples over --max-tokens: ${over
        .slice(0, 3)
        .map((b) => JSON.stringify(b.text))
        .join("\n")}`,
    );
  });
});
