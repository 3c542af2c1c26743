import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";
import { sequenceIdOf } from "./batching.ts";

/**
 * A context's sequences, created on first need and kept for the context's life, handed out so that
 * the ids in use stay in as few runs of consecutive ids as possible. llama.cpp decodes the
 * sequences of a batch in one pass only while their ids run consecutively (batching.ts);
 * node-llama-cpp gives a disposed sequence's id to the next getSequence() in the order they were
 * disposed, which scatters the ids of conversations that come and go (in use 2 and 3, it hands out
 * 0 before 1: two passes a step instead of one).
 */
export class SequencePool {
  /** Given back and cleared. */
  private readonly free = new Map<number, LlamaContextSequence>();
  private readonly inUse = new Set<number>();
  /** node-llama-cpp counts new ids up from 0, and none is ever disposed here: the next new id. */
  private created = 0;

  constructor(readonly context: LlamaContext) {}

  /** Sequences a conversation can take now. */
  get available(): number {
    return this.free.size + this.context.sequencesLeft;
  }

  /** A free sequence next to one in use if there is one, else the lowest free. */
  take(): LlamaContextSequence {
    const candidates = [...this.free.keys()];
    if (this.context.sequencesLeft > 0) candidates.push(this.created);
    const adjacent = candidates.filter((id) => this.inUse.has(id - 1) || this.inUse.has(id + 1));
    const id = Math.min(...(adjacent.length > 0 ? adjacent : candidates));
    if (!Number.isFinite(id)) throw new Error("no sequence left in this context");
    let sequence = this.free.get(id);
    if (sequence) this.free.delete(id);
    else {
      sequence = this.context.getSequence();
      this.created++;
    }
    this.inUse.add(sequenceIdOf(sequence));
    return sequence;
  }

  /** Clears `sequence` (its history is the conversation's, not the next one's) and takes it back. */
  async give(sequence: LlamaContextSequence): Promise<void> {
    const id = sequenceIdOf(sequence);
    this.inUse.delete(id);
    if (sequence.disposed) return; // its context is gone: nothing to keep
    await sequence.clearHistory();
    this.free.set(id, sequence);
  }
}
