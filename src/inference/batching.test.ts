import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BatchItem, Token } from "node-llama-cpp";
import { fairShares, gatheringStrategy, newBatchLoad } from "./batching.ts";

const item = (tokens: number): BatchItem => ({
  tokens: Array.from({ length: tokens }, (_, i) => i as Token),
  logits: [],
  evaluationPriority: 5,
});
const amounts = (shares: { processAmount: number }[]) => shares.map((share) => share.processAmount);

describe("batch shares", () => {
  it("gives each queued item an equal share and hands what short items leave to the rest", () => {
    assert.deepEqual(amounts(fairShares([item(3), item(100), item(1)], 50)), [3, 46, 1], "short items whole");
    assert.deepEqual(amounts(fairShares([item(400), item(400)], 512)), [256, 256], "two long prompts split");
    assert.deepEqual(
      amounts(
        fairShares(
          Array.from({ length: 8 }, () => item(1)),
          512,
        ),
      ),
      Array(8).fill(1),
    );
    assert.deepEqual(amounts(fairShares([item(10), item(10), item(10)], 2)), [1, 1], "a full batch stops");
    assert.deepEqual(fairShares([], 512), [], "nothing queued");
  });

  it("waits for every replying sequence, a bounded number of rounds, and counts what it sends", () => {
    const load = { ...newBatchLoad(), replying: 3 };
    const strategy = gatheringStrategy(load, 2);
    const two = [item(1), item(1)];
    assert.deepEqual(strategy({ items: two, size: 512 }), [], "2 of 3 queued: wait");
    assert.deepEqual(strategy({ items: two, size: 512 }), [], "still waiting");
    assert.deepEqual(amounts(strategy({ items: two, size: 512 })), [1, 1], "gives up after 2 rounds");
    assert.deepEqual(
      amounts(strategy({ items: [...two, item(1)], size: 512 })),
      [1, 1, 1],
      "all three: at once",
    );
    assert.deepEqual(strategy({ items: two, size: 512 }), [], "the wait allowance starts over");
    load.replying = 2;
    assert.deepEqual(amounts(strategy({ items: two, size: 512 })), [1, 1], "one finished: two are all");
    assert.deepEqual([load.batches, load.items], [3, 7], "batches sent and sequences they carried");
  });
});
