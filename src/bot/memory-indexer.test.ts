import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { IndexOutcome } from "../history/memory/memory.repository.ts";
import { createLog } from "./log.ts";
import { MemoryIndexer } from "./memory-indexer.ts";

/** A memory whose runs end when the test says, recording how many ran and whether two overlapped. */
function fakeMemory(status: IndexOutcome["status"] = "done") {
  const state = { runs: 0, active: 0, overlapped: false, signals: [] as AbortSignal[] };
  let finish: (() => void) | undefined;
  const memory = {
    index: async (options?: { signal?: AbortSignal }) => {
      state.runs++;
      state.active++;
      if (state.active > 1) state.overlapped = true;
      if (options?.signal) state.signals.push(options.signal);
      await new Promise<void>((resolve) => {
        finish = resolve;
        options?.signal?.addEventListener("abort", () => resolve());
      });
      state.active--;
      return { status, indexed: 1, total: 1, ...(status === "refused" ? { refusal: "SQL_ASCII" } : {}) };
    },
  };
  const endRun = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    finish?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { memory, state, endRun };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

describe("the bot's memory indexer", () => {
  it("never runs twice at once; requests during a run make exactly one more run", async () => {
    const { memory, state, endRun } = fakeMemory();
    const indexer = new MemoryIndexer(
      memory,
      async () => undefined,
      createLog([], () => undefined),
    );
    indexer.request();
    indexer.request();
    indexer.request();
    await settle();
    assert.equal(state.runs, 1);
    await endRun();
    await settle();
    assert.equal(state.runs, 2, "one more run for the requests made meanwhile");
    await endRun();
    await indexer.idle();
    assert.equal(state.runs, 2, "and no third");
    assert.equal(state.overlapped, false);
  });

  it("stop aborts the run in progress through its signal and takes no more requests", async () => {
    const { memory, state } = fakeMemory();
    const indexer = new MemoryIndexer(
      memory,
      async () => undefined,
      createLog([], () => undefined),
    );
    indexer.request();
    await settle();
    indexer.request(); // would run again after this one
    await indexer.stop();
    assert.equal(state.signals[0]?.aborted, true);
    indexer.request();
    await settle();
    assert.equal(state.runs, 1, "nothing after the stop");
  });

  it("logs errors instead of throwing, and a refusal once", async () => {
    const lines: string[] = [];
    const log = createLog([], (line) => lines.push(line));
    const failing = new MemoryIndexer(
      {
        index: async () => {
          throw new Error("connection lost");
        },
      },
      async () => undefined,
      log,
    );
    failing.request();
    await failing.idle();
    assert.deepEqual(lines, ["twin bot: indexing the memory: Error: connection lost\n"]);

    lines.length = 0;
    const { memory, endRun } = fakeMemory("refused");
    const refused = new MemoryIndexer(memory, async () => undefined, log);
    for (let i = 0; i < 2; i++) {
      refused.request();
      await endRun();
      await refused.idle();
    }
    assert.deepEqual(lines, ["twin bot: memory is off: SQL_ASCII\n"]);
  });

  it("the watch runs when an import ended since its last run, and again while another process was busy", async () => {
    let ended = new Date("2026-01-01T00:00:00Z");
    let status: IndexOutcome["status"] = "done";
    let runs = 0;
    const indexer = new MemoryIndexer(
      {
        index: async () => {
          runs++;
          return { status, indexed: 0, total: 0 };
        },
      },
      async () => ended,
      createLog([], () => undefined),
    );
    await indexer.watch();
    await indexer.idle();
    assert.equal(runs, 1, "an import nobody here indexed after");
    await indexer.watch();
    await indexer.idle();
    assert.equal(runs, 1, "nothing new");

    ended = new Date("2026-01-02T00:00:00Z");
    status = "busy";
    await indexer.watch();
    await indexer.idle();
    assert.equal(runs, 2, "a new import");
    status = "done";
    await indexer.watch();
    await indexer.idle();
    assert.equal(runs, 3, "asked again: the busy process may not have finished");
    await indexer.watch();
    await indexer.idle();
    assert.equal(runs, 3);
  });
});
