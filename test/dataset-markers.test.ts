import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { buildDataset, type DatasetOptions, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { joinSegments, type Segment } from "../src/dataset/chatml.ts";
import { createDatasetRepository } from "../src/dataset/dataset.repository.ts";
import type { Example } from "../src/dataset/examples.ts";
import { estimateTokens } from "../src/dataset/length.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { appOf } from "./support/app.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-markers-test-"));
const ME = { id: 1, name: "Me" };
const ANNA = { id: 2, name: "Anna" };
const START = Date.UTC(2024, 4, 1, 18, 0, 0) / 1000;
const LONG_QUESTION = "are you coming on friday?\nwe could try the new place near the station";
/** About 1 MB of words, one message. */
const HUGE = Array.from({ length: 110_000 }, (_, i) => `word${i % 97}`).join(" ");

type Line = { id: number; who: typeof ME | typeof ANNA; text?: string; extra?: Record<string, unknown> };

/**
 * A hand-made export of one personal chat, in sessions a day apart: forwards with and without a
 * known author, replies inside and across sessions, a poll by each side, a forwarded poll, a 1 MB
 * message.
 */
function writeExport(): string {
  const sessions: Line[][] = [
    [
      { id: 1, who: ANNA, text: LONG_QUESTION },
      { id: 2, who: ME, text: "maybe" },
      { id: 3, who: ANNA, text: "ok" },
    ],
    [
      // Anna forwards two posts of one channel: one marker for the run.
      { id: 10, who: ANNA, text: "Markets fell 3% today", extra: { forwarded_from: "Reuters" } },
      { id: 11, who: ANNA, text: "Oil is up", extra: { forwarded_from: "Reuters" } },
      { id: 12, who: ANNA, text: "crazy, right?" },
      // The owner forwards a joke nobody signed, then says something of their own.
      { id: 13, who: ME, text: "a man walks into a bar", extra: { forwarded_from: null } },
      { id: 14, who: ME, text: "lol this one" },
      // A reply to the previous turn (Anna's): no marker.
      { id: 15, who: ME, text: "and yes, crazy", extra: { reply_to_message_id: 12 } },
      { id: 16, who: ANNA, text: "haha" },
      // A reply to a message of this session that is not the previous turn: a marker.
      { id: 17, who: ME, text: "the oil thing worries me", extra: { reply_to_message_id: 11 } },
    ],
    [
      // A reply across sessions: the marker quotes the first 60 characters.
      { id: 20, who: ANNA, text: "so?" },
      { id: 21, who: ME, text: "yes, I'm coming", extra: { reply_to_message_id: 1 } },
      // Polls: the owner's, Anna's, and one Anna forwards.
      { id: 22, who: ME, extra: { poll: poll("Where do we eat?", ["Pizza", "Sushi"]) } },
      { id: 23, who: ANNA, extra: { poll: poll("What time?", ["7", "8"]) } },
      { id: 24, who: ANNA, extra: { poll: poll("Best band?", ["A", "B"]), forwarded_from: "Music Club" } },
      { id: 25, who: ME, text: "voted" },
    ],
    [
      { id: 30, who: ANNA, text: "send me the whole thing" },
      { id: 31, who: ME, text: HUGE },
      { id: 32, who: ANNA, text: "wow, thanks" },
    ],
  ];
  const messages = sessions.flatMap((session, s) =>
    session.map(({ id, who, text, extra }, m) => {
      const unix = START + s * 86_400 + m * 30;
      return {
        id,
        type: "message",
        date: new Date(unix * 1000).toISOString().slice(0, 19),
        date_unixtime: String(unix),
        from: who.name,
        from_id: `user${who.id}`,
        text: text ?? "",
        ...extra,
      };
    }),
  );
  const file = path.join(scratch, "result.json");
  fs.writeFileSync(
    file,
    JSON.stringify({
      personal_information: { user_id: ME.id, first_name: ME.name },
      chats: { list: [{ name: ANNA.name, type: "personal_chat", id: ANNA.id, messages }] },
    }),
  );
  return file;
}

function poll(question: string, answers: string[]) {
  return { question, closed: false, total_voters: 2, answers: answers.map((text) => ({ text, voters: 1 })) };
}

/** Every `>>> ` line of an example with whether it is trained, in order. */
function lines(example: Example): { line: string; train: boolean }[] {
  const out: { line: string; train: boolean }[] = [];
  for (const segment of example.segments as Segment[]) {
    if (!segment.text.startsWith(">>> ")) continue;
    for (const line of segment.text.replace(/<\|im_end\|>$/, "").split("\n")) {
      if (line) out.push({ line: line.replace(/^>>> /, ""), train: segment.train });
    }
  }
  return out;
}

describe("dataset markers: forwards, replies, polls and huge messages", { timeout: 300_000 }, () => {
  let database: TestDatabase;
  const options = (overrides: Partial<DatasetOptions> = {}): DatasetOptions => ({
    ...defaultDatasetOptions("UTC"),
    since: null,
    evalFraction: 0,
    minTurns: 2,
    maxTokens: 1024,
    ...overrides,
  });
  const build = async (overrides: Partial<DatasetOptions> = {}) => {
    const result = await buildDataset(appOf(database), options(overrides));
    const examples = await createDatasetRepository(database).examples(result.datasetId);
    return { ...result, examples, all: examples.flatMap(lines) };
  };

  before(async () => {
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: writeExport(), timeZone: "UTC", batchSize: 100 },
    );
  });
  after(async () => {
    await database.close();
    await stopEmbedded();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("marks forwards as untrained context, one marker per run, 'someone' for an unnamed author", async () => {
    const { all } = await build();
    const at = all.findIndex((l) => l.line === "[forwarded from Reuters]");
    assert.deepEqual(all.slice(at, at + 4), [
      { line: "[forwarded from Reuters]", train: false },
      { line: "Markets fell 3% today", train: false },
      { line: "Oil is up", train: false },
      { line: "crazy, right?", train: true },
    ]);
    const own = all.findIndex((l) => l.line === "[forwarded from someone]");
    assert.deepEqual(all.slice(own, own + 3), [
      { line: "[forwarded from someone]", train: false },
      { line: "a man walks into a bar", train: false },
      { line: "lol this one", train: true },
    ]);
    const { all: dropped, manifest } = await build({ forwards: "drop" });
    assert.equal(
      dropped.filter((l) => /forwarded from|Markets fell|walks into a bar|Best band/.test(l.line)).length,
      0,
      "--forwards drop leaves them out",
    );
    assert.ok(dropped.some((l) => l.line === "lol this one" && l.train));
    assert.equal(manifest.counts.markers.forwarded, 0);
  });

  it("marks a reply only when it answers something other than the previous turn, quoting 60 characters", async () => {
    const { all, manifest } = await build();
    const before = (line: string) => all[all.findIndex((l) => l.line === line) - 1];
    assert.deepEqual(before("and yes, crazy"), { line: "lol this one", train: true }, "no marker");
    assert.deepEqual(before("the oil thing worries me"), {
      line: '[reply to Anna: "Oil is up"]',
      train: false,
    });
    assert.deepEqual(before("yes, I'm coming"), {
      line: '[reply to Anna: "are you coming on friday? we could try the new place near th…"]',
      train: false,
    });
    assert.equal(manifest.counts.markers.replies, 2);
    assert.equal(manifest.counts.messages, 20, "markers are not messages");
  });

  it("renders polls with their question and options, trained only as their author's own words", async () => {
    const { all, manifest } = await build({ loss: { kind: "owner" } });
    assert.ok(all.some((l) => l.line === "[poll] Where do we eat? — Pizza / Sushi" && l.train));
    assert.ok(
      all.some((l) => l.line === "[poll] What time? — 7 / 8" && !l.train),
      "Anna's, under --loss owner",
    );
    const forwarded = all.findIndex((l) => l.line === "[poll] Best band? — A / B");
    assert.deepEqual(all[forwarded - 1], { line: "[forwarded from Music Club]", train: false });
    const { all: everyone } = await build();
    assert.ok(
      everyone.some((l) => l.line === "[poll] What time? — 7 / 8" && l.train),
      "Anna's, under --loss all",
    );
    assert.ok(
      everyone.some((l) => l.line === "[poll] Best band? — A / B" && !l.train),
      "a forwarded poll never",
    );
    assert.equal(manifest.counts.markers.polls, 3);
  });

  it("cuts a 1 MB message at a word boundary so that no example exceeds --max-tokens", async () => {
    for (const maxTokens of [1024, 300]) {
      const { examples, all, manifest } = await build({ maxTokens });
      for (const example of examples) {
        const tokens = estimateTokens(joinSegments(example.segments));
        assert.ok(tokens <= maxTokens, `example ${example.id}: ${tokens} tokens > ${maxTokens}`);
      }
      const at = all.findIndex((l) => l.line === "… [truncated]");
      assert.ok(at > 0, "the truncation line");
      assert.equal(all[at]?.train, false);
      const cut = all[at - 1] as { line: string; train: boolean };
      assert.ok(cut.train && HUGE.startsWith(cut.line) && cut.line.length > 100, "a trained prefix");
      assert.match(HUGE.slice(cut.line.length), /^ /, "cut where a word ends");
      assert.ok(
        all.some((l) => l.line === "wow, thanks"),
        "the session goes on after it",
      );
      assert.equal(manifest.counts.markers.truncated, 1);
    }
  });

  it("passes the trainer's label check on every marker: labelled tokens decode to the trained text", async () => {
    const out = path.join(scratch, "dataset");
    const { examples } = await build({ outDir: out });
    // Two body segments in a row: a turn split around its context lines.
    const split = (e: Example) =>
      e.segments.some((s, i) => s.text.startsWith(">>> ") && e.segments[i + 1]?.text.startsWith(">>> "));
    assert.ok(examples.some(split), "turns split around markers");
    const check = spawnSync(
      path.join(root, "trainer/.venv/bin/python"),
      [
        "-c",
        `import sys
from twin_trainer.data import load_dataset, label_example
from pathlib import Path
from twin_trainer.model import gguf_tokenizer
dataset = load_dataset(sys.argv[1])
tokenizer = gguf_tokenizer(Path(sys.argv[2]))
for example in dataset.train + dataset.eval:
    label_example(example, tokenizer)
print(len(dataset.train) + len(dataset.eval), "labelled")`,
        out,
        testModel(),
      ],
      { cwd: path.join(root, "trainer"), encoding: "utf8" },
    );
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, new RegExp(`^${examples.length} labelled`));
  });
});
