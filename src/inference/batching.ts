import type { BatchItem, PrioritizedBatchItem } from "node-llama-cpp";

/**
 * How a context fills each batch. node-llama-cpp decodes whatever is queued the moment the last
 * batch returns; while 8 conversations generate, the one whose token was sampled last has not queued
 * its next token yet, so every batch carried 7 of the 8 (measured: 72 of 73 batches), and on CPU a
 * batch of 7 can cost more than a batch of 8 (llama-batched-bench, Q4_1: 44.8 vs 38.4 ms a step).
 * So a batch waits, for a few microtask turns at most, until every conversation that is replying
 * has queued; then each queued item gets an equal share of the batch.
 */
export type BatchingStrategy = (options: {
  items: readonly BatchItem[];
  size: number;
}) => PrioritizedBatchItem[];

/**
 * @param load `replying`: how many sequences of the context are inside a reply now (each will queue
 *   soon); the strategy counts the batches it fills and the sequences they carry into it.
 * @param maxWaits how many empty rounds one batch may wait: each is a microtask turn of the
 *   dispatcher, so a sequence held up by real work (not just promise hops) is not waited for.
 */
export function gatheringStrategy(load: BatchLoad, maxWaits = 16): BatchingStrategy {
  let waits = 0;
  return ({ items, size }) => {
    if (items.length < load.replying && waits < maxWaits) {
      waits++;
      return []; // nothing decoded this round: the dispatcher looks again at once
    }
    waits = 0;
    const shares = fairShares(items, size);
    if (shares.length > 0) {
      load.batches++;
      load.items += shares.length;
    }
    return shares;
  };
}

/** A context's batching state: sequences replying now, and what its batches have carried so far. */
export type BatchLoad = { replying: number; batches: number; items: number };

export const newBatchLoad = (): BatchLoad => ({ replying: 0, batches: 0, items: 0 });

/** Each item gets an equal share of the batch's tokens; what short items leave goes to the rest, in order. */
export function fairShares(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  const shares = items.map((item) => ({ item, processAmount: 0 }));
  let left = size;
  let open = shares.filter((share) => share.item.tokens.length > 0);
  while (left > 0 && open.length > 0) {
    const each = Math.max(1, Math.floor(left / open.length));
    for (const share of open) {
      const take = Math.min(each, share.item.tokens.length - share.processAmount, left);
      share.processAmount += take;
      left -= take;
      if (left === 0) break;
    }
    open = open.filter((share) => share.processAmount < share.item.tokens.length);
  }
  return shares.filter((share) => share.processAmount > 0);
}
