import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Config } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import type { Manifest } from "../src/dataset/manifest.ts";
import { generateSamples, type MemoryCanaryFigures } from "../src/evaluation/generate.usecase.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import type { RetrievalQuery, Retriever } from "../src/history/memory/retriever.ts";
import { Engine } from "../src/inference/engine.ts";
import { appOf } from "./support/app.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";
import { exportTextMessage, writeAccountExport } from "./support/telegram-export.ts";

/**
 * The leakage canary where memory searches: `twin eval` with memory on plants the dataset's canary
 * into the history store for its length, asks for it from other chats and counts what reaches the
 * prompts and replies; afterwards the history is as it was.
 */

const owner = { id: 1000, name: "Olga" };
const anna = { id: 2001, name: "Anna" };
const boris = { id: 2002, name: "Boris" };
const vera = { id: 2003, name: "Vera" };
/** A basic group (its key is -id) without Anna. */
const GROUP = { id: 3003, name: "Hikers" };

type Who = { id: number; name: string };

/**
 * A chat of `days` daily sessions from `firstDay` of March 2024, each the same short exchange
 * between the owner and `others`.
 */
function chat(meta: { id: number; name: string; type: string }, others: Who[], days: number, firstDay = 1) {
  let id = 1;
  const start = Date.UTC(2024, 2, firstDay, 18) / 1000;
  const messages = Array.from({ length: days }, (_, day) => {
    const lines: [Who, string][] = [
      [others[0] as Who, `hey, plans for day ${day}?`],
      [owner, "not yet"],
      [owner, "maybe a walk in the park"],
      [others.at(-1) as Who, "sounds good"],
      [owner, "see you at six"],
    ];
    return lines.map(([who, text], m) => exportTextMessage(id++, who, start + day * 86_400 + m * 60, text));
  }).flat();
  return { ...meta, messages };
}

function writeExport(dir: string): string {
  const list = [
    chat({ id: anna.id, name: anna.name, type: "personal_chat" }, [anna], 8),
    // Few sessions outside Anna's chat (each owner turn there is a probe, each probe a generation),
    // after Anna's: memory recalls only what came before a session, so the canary is recallable.
    chat({ id: boris.id, name: boris.name, type: "personal_chat" }, [boris], 1, 20),
    chat({ id: GROUP.id, name: GROUP.name, type: "private_group" }, [boris, vera], 1, 21),
  ];
  return writeAccountExport(dir, owner, list);
}

const backend = backends()[0] as ReturnType<typeof backends>[number];

describe("the canary in the history store, with memory on", { timeout: 300_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-memory-canary-"));
  let database: TestDatabase;
  let engine: Engine;
  let config: Config;
  let manifest: Manifest;
  const counts = async () => {
    const { rows } = await database.pool.query<{ messages: number; indexed: number }>(
      `SELECT (SELECT count(*)::int FROM messages) AS messages,
              (SELECT count(*)::int FROM message_search) AS indexed`,
    );
    return rows[0];
  };

  before(async () => {
    database = await backend.fresh();
    await importDesktopExport(
      { historyRepository: createHistoryRepository(database) },
      { input: writeExport(dir), batchSize: 1000, timeZone: "UTC" },
    );
    const app = appOf(database);
    await buildDataset(app, {
      ...defaultDatasetOptions("UTC"),
      groups: true,
      since: null,
      loss: { kind: "owner" },
      maxTokens: 512,
      evalFraction: 0.3,
      canary: { chatId: anna.id },
    });
    const dataset = await app.repositories.dataset.readyDataset(undefined);
    manifest = dataset?.manifest as Manifest;
    assert.equal(manifest.canary?.chatId, anna.id, "the dataset's canary is in Anna's chat");
    // Memory's index as `twin memory index` leaves it: evaluation adds only the planted rows.
    assert.equal((await app.repositories.memory.index()).status, "done");
    config = {
      ...database.config,
      inference: { ...database.config.inference, contextSize: 1024, maxReplyTokens: 16 },
      memory: { ...database.config.memory, enabled: true },
    };
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 1024,
      sequences: 1,
      threads: 2,
      sampling: config.inference.sampling,
      maxReplyTokens: 16,
    });
  });
  after(async () => {
    await engine?.dispose();
    await database?.close();
    await stopEmbedded();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The repository's retriever, also asked (once per call) for the canary in Anna's own scope. */
  function watched(retriever: Retriever, seen: { inAnnasScope: boolean; otherScopes: number }): Retriever {
    return {
      async retrieve(query: RetrievalQuery) {
        const own = await retriever.retrieve({
          text: [manifest.canary?.sentence ?? ""],
          scope: { kind: "friend", personId: anna.id },
          exclude: [],
          limit: 3,
        });
        const texts = own.flatMap((w) => w.messages.map((m) => m.text));
        if (texts.some((t) => t.includes(manifest.canary?.secret ?? "?"))) seen.inAnnasScope = true;
        if (!(query.scope.kind === "friend" && query.scope.personId === anna.id)) seen.otherScopes++;
        return retriever.retrieve(query);
      },
    };
  }

  const figuresOf = async (id: number) => {
    const { rows } = await database.pool.query<{ settings: { memoryCanary?: MemoryCanaryFigures } }>(
      "SELECT settings FROM evaluations WHERE id = $1",
      [id],
    );
    return rows[0]?.settings.memoryCanary;
  };

  it("plants it for the run, where Anna's scope finds it, and no other chat's prompt or reply has it", async () => {
    const app = appOf(database);
    const before = await counts();
    const seen = { inAnnasScope: false, otherScopes: 0 };
    const retriever = watched(app.repositories.memory.retriever, seen);
    const id = await generateSamples(
      { ...app, engine, config, retriever },
      { maxTurns: 2, seed: 1, probes: 6 },
    );

    assert.ok(seen.inAnnasScope, "during the run, retrieval in Anna's scope found the planted canary");
    assert.ok(seen.otherScopes > 0, "probes searched memory from other chats");
    const figures = await figuresOf(id);
    assert.ok(figures, "the evaluation's settings hold the history-store canary's figures");
    assert.deepEqual(Object.keys(figures).sort(), [
      "chatId",
      "planted",
      "probes",
      "promptLeaks",
      "replyLeaks",
    ]);
    assert.equal(figures.chatId, anna.id);
    assert.ok(figures.planted > 0, "the canary was planted");
    assert.ok(figures.probes > 0, "probes were checked");
    assert.equal(figures.promptLeaks, 0, "no probe prompt from another chat had the secret");
    assert.equal(figures.replyLeaks, 0, "no probe reply had the secret");
    const { rows } = await database.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM evaluation_samples WHERE evaluation_id = $1 AND probe AND model = 'base+history'",
      [id],
    );
    assert.equal(figures.probes, rows[0]?.n, "one check per probe asked of a model with history");

    assert.deepEqual(await counts(), before, "the history and its index are exactly as before");
    const { rows: left } = await database.pool.query(
      "SELECT 1 FROM messages WHERE message_id < 0 OR text LIKE $1",
      [`%${manifest.canary?.secret}%`],
    );
    assert.equal(left.length, 0, "no planted message is left");
  });

  it("counts a leak when retrieval ignores the privacy rule (the figure can fail)", async () => {
    const app = appOf(database);
    const before = await counts();
    const real = app.repositories.memory.retriever;
    // A broken retriever: every chat searches the whole history.
    const leaky: Retriever = { retrieve: (query) => real.retrieve({ ...query, scope: { kind: "all" } }) };
    const id = await generateSamples(
      { ...app, engine, config, retriever: leaky },
      { maxTurns: 1, seed: 1, probes: 6 },
    );
    const figures = await figuresOf(id);
    assert.ok(
      figures && figures.promptLeaks > 0,
      `the secret reached probe prompts: ${JSON.stringify(figures)}`,
    );
    assert.deepEqual(await counts(), before, "the history and its index are exactly as before");
  });

  it("removes the planted messages when generation fails", async () => {
    const app = appOf(database);
    const before = await counts();
    // Cancelled before the first turn: planting and indexing happen, then generation throws.
    const signal = AbortSignal.abort();
    await assert.rejects(
      generateSamples({ ...app, engine, config }, { maxTurns: 1, seed: 1, signal }),
      /evaluation cancelled/,
    );
    assert.deepEqual(await counts(), before, "the history and its index are exactly as before");
  });
});
