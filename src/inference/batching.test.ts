import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BatchItem, Token } from "node-llama-cpp";
import { consecutiveRuns, fairShares, gatheringStrategy, newBatchLoad } from "./batching.ts";

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
    const strategy = gatheringStrategy(load, { maxWaits: 2 });
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

  it("orders a batch by sequence id and counts the passes llama.cpp will split it into", () => {
    const load = newBatchLoad();
    const [a, b, c, d] = [item(1), item(1), item(5), item(1)];
    const ids = new Map([
      [a, 3],
      [b, 1],
      [c, 2],
      [d, 0],
    ]);
    const strategy = gatheringStrategy(load, { sequenceOf: (queued) => ids.get(queued) });
    const shares = strategy({ items: [a, b, c, d], size: 512 });
    assert.deepEqual(
      shares.map((share) => ids.get(share.item)),
      [0, 1, 2, 3],
      "increasing ids, whatever the queue order",
    );
    assert.deepEqual(amounts(shares), [1, 1, 5, 1], "each item keeps its share");
    assert.equal(load.passes, 1, "0..3 is one pass");
    ids.set(b, 5); // now 0, 2, 3, 5
    strategy({ items: [a, b, c, d], size: 512 });
    assert.equal(load.passes, 1 + 3, "0 | 2, 3 | 5: three passes");
    const unknown = gatheringStrategy(newBatchLoad(), {
      sequenceOf: (queued) => (queued === d ? 0 : undefined),
    });
    assert.equal(unknown({ items: [a, d, b], size: 512 })[0]?.item, d, "unknown ids go last");
  });

  it("counts runs of consecutive ids", () => {
    assert.equal(consecutiveRuns([0, 1, 2, 3, 4, 5, 6, 7]), 1);
    assert.equal(consecutiveRuns([5, 6, 7, 0, 1, 2, 3, 4]), 2, "node-llama-cpp's reuse order, unsorted");
    assert.equal(consecutiveRuns([0, 2, 4]), 3, "gaps");
    assert.equal(consecutiveRuns([1, 1]), 2, "a repeated id is not consecutive");
    assert.equal(
      consecutiveRuns([0, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY]),
      3,
      "unknown ids each",
    );
    assert.equal(consecutiveRuns([]), 0);
  });
});
