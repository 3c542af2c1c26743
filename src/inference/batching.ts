import type { BatchItem, LlamaContext, LlamaContextSequence, PrioritizedBatchItem } from "node-llama-cpp";

/**
 * How a context fills each batch.
 *
 * Who is in it: node-llama-cpp decodes whatever is queued the moment the last batch returns; while
 * 8 conversations generate, the one whose token was sampled last has not queued its next token yet,
 * so every batch carried 7 of the 8 (measured: 72 of 73 batches), and on CPU a batch of 7 can cost
 * more than a batch of 8 (llama-batched-bench, Q4_1: 44.8 vs 38.4 ms a step). So a batch waits, for
 * a few microtask turns at most, until every conversation that is replying has queued; then each
 * queued item gets an equal share of the batch.
 *
 * In which order: node-llama-cpp gives each sequence its own KV cache (llama.cpp's kv_unified off),
 * and then llama.cpp decodes sequences in one pass only while they come in the batch with
 * consecutive, increasing ids (llama_batch_allocr::split_equal, "sequential"); any other order is
 * split into several passes, each reading every weight again. So the batch is sorted by sequence
 * id, and SequencePool keeps the ids in use packed. Measured with a 7B-shaped model on 2 cores,
 * 8 conversations whose ids node-llama-cpp had handed back out of order: 2 passes a step and
 * 30 tokens/s unsorted, 1 pass and 50 tokens/s sorted.
 */
export type BatchingStrategy = (options: {
  items: readonly BatchItem[];
  size: number;
}) => PrioritizedBatchItem[];

/**
 * @param load `replying`: how many sequences of the context are inside a reply now (each will queue
 *   soon); the strategy counts the batches it fills, the sequences they carry and the passes
 *   llama.cpp will split them into.
 * @param options.sequenceOf the sequence id of a queued item (queuedSequenceId); unknown ids go last.
 * @param options.maxWaits how many empty rounds one batch may wait: each is a microtask turn of the
 *   dispatcher, so a sequence held up by real work (not just promise hops) is not waited for.
 */
export function gatheringStrategy(
  load: BatchLoad,
  options: { sequenceOf?: (item: BatchItem) => number | undefined; maxWaits?: number } = {},
): BatchingStrategy {
  const { sequenceOf = () => undefined, maxWaits = 16 } = options;
  let waits = 0;
  return ({ items, size }) => {
    if (items.length < load.replying && waits < maxWaits) {
      waits++;
      return []; // nothing decoded this round: the dispatcher looks again at once
    }
    waits = 0;
    const ids = new Map(items.map((item) => [item, sequenceOf(item) ?? Number.POSITIVE_INFINITY]));
    const idOf = (share: PrioritizedBatchItem) => ids.get(share.item) ?? Number.POSITIVE_INFINITY;
    const shares = fairShares(items, size).sort((a, b) => idOf(a) - idOf(b));
    if (shares.length > 0) {
      load.batches++;
      load.items += shares.length;
      load.passes += consecutiveRuns(shares.map(idOf));
    }
    return shares;
  };
}

/**
 * A context's batching state: sequences replying now, and what its batches have carried so far —
 * batches, sequences summed over them, and llama.cpp passes (runs of consecutive ids) summed.
 */
export type BatchLoad = { replying: number; batches: number; items: number; passes: number };

export const newBatchLoad = (): BatchLoad => ({ replying: 0, batches: 0, items: 0, passes: 0 });

/** How many runs of consecutive increasing ids `ids` holds, in order; an unknown id is a run of its own. */
export function consecutiveRuns(ids: readonly number[]): number {
  let runs = 0;
  let previous = Number.NaN;
  for (const id of ids) {
    if (!Number.isFinite(id) || id !== previous + 1) runs++;
    previous = id;
  }
  return runs;
}

// node-llama-cpp exposes neither a sequence's id nor which sequence a batch item belongs to, and
// batching needs both; these read them from its internals (3.21.1, pinned exactly in package.json).
// test/inference.test.ts fails when a release changes them.

/** The id node-llama-cpp gave `sequence` (its llama.cpp seq_id). */
export function sequenceIdOf(sequence: LlamaContextSequence): number {
  const id = (sequence as unknown as { _sequenceId?: unknown })._sequenceId;
  if (typeof id !== "number")
    throw new Error("node-llama-cpp no longer exposes a sequence's id (_sequenceId)");
  return id;
}

/** The id of the sequence that queued `item` on `context`: a batch item carries its decode's own token array. */
export function queuedSequenceId(context: LlamaContext, item: BatchItem): number | undefined {
  const queued = (context as unknown as { _queuedDecodes?: { tokens: unknown; sequenceId: number }[] })
    ._queuedDecodes;
  return queued?.find((decode) => decode.tokens === item.tokens)?.sequenceId;
}

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
