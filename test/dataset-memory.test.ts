import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import type { Example } from "../src/dataset/examples.ts";
import type { Manifest } from "../src/dataset/manifest.ts";
import { recallProbe, segmentMessages } from "../src/evaluation/recall-probe.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import type { RecalledWindow, RetrievalQuery, Retriever } from "../src/history/memory/retriever.ts";
import { contextSettings } from "../src/inference/conversation-context.ts";
import { appOf } from "./support/app.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { exportTextMessage, writeAccountExport } from "./support/telegram-export.ts";

after(stopEmbedded);

/**
 * `twin dataset --memory on` over a real history: the real import, indexer and retriever. Pavel's
 * cat is talked about early; more than 600 messages later (beyond the recent history a prompt
 * shows) he asks about it again, and memory must bring the early talk into that example, from
 * before its session only, never from Anna's chat, while every trained token stays as it was.
 */

const owner = { id: 1000, name: "Olga" };
const pavel = { id: 2001, name: "Pavel" };
const anna = { id: 2002, name: "Anna" };
const SECRET = "barsik vault code 771204";
const FILLER_SESSIONS = 70;

type Line = [who: { id: number; name: string }, text: string];

function writeExport(dir: string): string {
  let day = 0;
  const sessions: Line[][] = [
    [
      [pavel, "is your cat barsik still sick"],
      [owner, "barsik goes to the vet tomorrow"],
      [pavel, "fingers crossed"],
      [owner, "thanks"],
    ],
    // Unique filler talk: pushes the early session out of the latest 600 messages.
    ...Array.from({ length: FILLER_SESSIONS }, (_, s) =>
      Array.from({ length: 10 }, (_, i): Line => [i % 2 ? owner : pavel, `zq${s}x${i} wobble${s}k${i}`]),
    ),
    // Recent history when Pavel asks again: the prompt shows it already, memory must not repeat it.
    [
      [pavel, "the pharmacy sells antibiotics cheap"],
      [owner, "good to know"],
    ],
    [
      [pavel, "did barsik finish the antibiotics"],
      [owner, "yes barsik is healthy again"],
      [pavel, "great"],
      [owner, "xylophone quartz"],
    ],
  ];
  const messagesOf = (lines: Line[][], start: number) => {
    let id = 1;
    return lines.flatMap((session) => {
      const at = Date.UTC(2024, 0, 1) / 1000 + (start + day++) * 86_400;
      return session.map(([who, text], i) => exportTextMessage(id++, who, at + i * 60, text));
    });
  };
  const pavelChat = {
    id: pavel.id,
    name: pavel.name,
    type: "personal_chat",
    messages: messagesOf(sessions, 0),
  };
  day = 0;
  const annaChat = {
    id: anna.id,
    name: anna.name,
    type: "personal_chat",
    messages: messagesOf(
      [
        [
          [anna, "what is the code for barsik"],
          [owner, SECRET],
          [anna, "noted"],
        ],
      ],
      1,
    ),
  };
  return writeAccountExport(dir, owner, [pavelChat, annaChat]);
}

/** Each recalled window's messages, with the query that found them. */
class RecordingRetriever implements Retriever {
  readonly calls: { query: RetrievalQuery; windows: RecalledWindow[] }[] = [];
  constructor(private readonly inner: Retriever) {}
  async retrieve(query: RetrievalQuery): Promise<RecalledWindow[]> {
    const windows = await this.inner.retrieve(query);
    this.calls.push({ query, windows });
    return windows;
  }
}

const memoryText = (example: Example) =>
  example.segments.find((s, i) => i > 0 && s.speaker === "system" && s.text.includes("Earlier · "))?.text;

for (const backend of backends()) {
  describe(`twin dataset --memory on ${backend.name} PostgreSQL`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let dir: string;
    let plain: { manifest: Manifest; examples: Example[] };
    let memory: { manifest: Manifest; examples: Example[] };
    let recorder: RecordingRetriever;

    before(async () => {
      database = await backend.fresh();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-dataset-memory-"));
      await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: writeExport(dir), batchSize: 1000, timeZone: "UTC" },
      );
      const app = appOf(database);
      recorder = new RecordingRetriever(app.repositories.memory.retriever);
      const recording = {
        ...app,
        repositories: { ...app.repositories, memory: { ...app.repositories.memory, retriever: recorder } },
      };
      const options = {
        ...defaultDatasetOptions("UTC"),
        since: null,
        loss: { kind: "owner" as const },
        evalFraction: 0.01,
        memory: undefined, // the plain arm; memory is on by default
      };
      const built = async (memoryOn: boolean) => {
        const result = await buildDataset(
          recording,
          memoryOn ? { ...options, memory: { windows: 3, maxTokens: 512 } } : options,
        );
        return {
          manifest: result.manifest,
          examples: await app.repositories.dataset.examples(result.datasetId),
        };
      };
      plain = await built(false);
      memory = await built(true);
    });
    after(async () => {
      await database?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it("indexes the history first and records memory's settings in the manifest", async () => {
      const { rows } = await database.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM message_search",
      );
      assert.equal(rows[0]?.n, 4 + FILLER_SESSIONS * 10 + 2 + 4 + 3);
      assert.deepEqual(memory.manifest.settings.memory, {
        enabled: true,
        windows: 3,
        queryTurns: 3,
        maxTokens: 512,
        recentMessages: 600,
      });
      assert.equal((plain.manifest.settings.memory as { enabled: boolean }).enabled, false);
      assert.ok((memory.manifest.memory?.examples ?? 0) > 0);
      // Serving follows the dataset unless TWIN_MEMORY says otherwise.
      const config = loadConfig({ TWIN_TZ: "UTC" });
      assert.deepEqual(contextSettings(config, memory.manifest).memory, {
        enabled: true,
        windows: 3,
        maxTokens: 512,
        queryTurns: 3,
      });
      assert.equal(contextSettings(config, plain.manifest).memory.enabled, false);
      assert.equal(
        contextSettings(loadConfig({ TWIN_MEMORY: "off" }), memory.manifest).memory.enabled,
        false,
      );
      assert.equal(
        contextSettings(loadConfig({ TWIN_MEMORY_WINDOWS: "1" }), memory.manifest).memory.windows,
        1,
      );
    });

    it("trains on exactly the same tokens with memory as without", () => {
      const trained = (examples: Example[]) =>
        examples.map((e) => [e.id, e.split, e.segments.filter((s) => s.train)]);
      assert.deepEqual(trained(memory.examples), trained(plain.examples));
      assert.ok(
        memory.examples.some((e, i) => e.segments.length > (plain.examples[i]?.segments.length ?? 0)),
      );
    });

    it("brings the early talk into the later example, from before its session and outside the recent history", () => {
      const later = memory.examples.find((e) => e.segments.some((s) => s.text.includes("healthy again")));
      assert.ok(later);
      const recalled = memoryText(later);
      assert.ok(recalled?.includes("Pavel: >>> is your cat barsik still sick"), recalled);
      assert.ok(recalled?.includes("Olga: >>> barsik goes to the vet tomorrow"));
      for (const { query, windows } of recorder.calls) {
        assert.ok(query.before, "every search is bounded by its example's session");
        for (const window of windows) {
          for (const message of window.messages) {
            assert.ok(message.sentAt < (query.before as Date), `${message.text} is not from the past`);
            for (const span of query.exclude) {
              const inSpan =
                window.chatId === span.chatId && message.sentAt >= span.from && message.sentAt <= span.to;
              assert.ok(!inSpan, `${message.text} is in the recent history the prompt already shows`);
            }
          }
        }
      }
      // The session right before it is recent history, though it matches the query: never recalled.
      assert.ok(!recalled?.includes("pharmacy"), recalled);
    });

    it("never recalls another friend's chat into Pavel's examples", () => {
      for (const example of memory.examples.filter((e) => e.chat_id === pavel.id)) {
        assert.ok(!memoryText(example)?.includes("771204"), example.id);
      }
      assert.ok(recorder.calls.some((c) => c.query.text.some((t) => t.includes("barsik"))));
    });

    it("finds the held-out turns whose words the owner wrote before (the 'knows the context' probe)", async () => {
      const app = appOf(database);
      const probe = await recallProbe(
        memory.examples,
        { saidBefore: app.repositories.memory.saidBefore, recentSince: app.repositories.history.recentSince },
        owner,
        600,
      );
      const later = memory.examples.find(
        (e) => e.split === "eval" && e.segments.some((s) => s.text.includes("healthy again")),
      );
      assert.ok(later, "the later session is held out");
      const trained = later.segments.filter((s) => s.train).map((s) => segmentMessages(s.text));
      assert.deepEqual(trained, ["yes barsik is healthy again", "xylophone quartz"]);
      // “barsik” was said in the early session; nobody ever wrote “xylophone” or “quartz”.
      assert.deepEqual(probe.examples[later.id], [0]);
      assert.equal(probe.turns, 2);
    });
  });
}
