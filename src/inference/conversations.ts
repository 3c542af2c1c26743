import fs from "node:fs/promises";
import path from "node:path";
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { makePrivate, privateDir } from "../files/private.ts";
import { type AdapterChoice, contextKey, type Engine, type Reply, type ReplyOptions } from "./engine.ts";
import { type Prompt, piecesFrom, promptText } from "./prompt.ts";
import type { SequencePool } from "./sequence-pool.ts";

/**
 * Live conversations and the sequences they hold. An active conversation keeps its sequence, so
 * its next reply evaluates only the tokens added since; when a context runs out of sequences, the
 * least recently used idle conversation gives its sequence up (saving its state to disk first when
 * a state folder is set, so it resumes without re-evaluating); when all are generating, a new
 * conversation waits for the first to finish.
 */

type Held = {
  key: string;
  contextKey: string;
  sequence: LlamaContextSequence;
  /** Where the sequence goes back to (it is the context's, kept for its life). */
  pool: SequencePool;
  busy: boolean;
  lastUsed: number;
  /** The last prompt's text and tokens plus the reply as sampled: the next prompt starts with them. */
  last?: { text: string; tokens: Token[] } | undefined;
};

export class Conversations {
  private readonly held = new Map<string, Held>();
  private clock = 0;
  /** Replies waiting for a sequence to become idle, first come first served. */
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly engine: Engine,
    private readonly options: { stateDir?: string | undefined } = {},
  ) {}

  /** Answers in conversation `key` (e.g. "chat:123"), reusing its sequence when it has one. */
  async reply(key: string, prompt: Prompt, adapter?: AdapterChoice, options?: ReplyOptions): Promise<Reply> {
    const held = await this.acquire(key, adapter);
    held.busy = true;
    try {
      const input = this.continuation(held, prompt);
      const reply = await this.engine.reply(held.sequence, input.tokens, {
        ...options,
        speakers: options?.speakers ?? prompt.speakers,
      });
      held.last = { text: input.text + reply.text, tokens: [...input.tokens, ...reply.tokens] };
      return reply;
    } finally {
      held.busy = false;
      held.lastUsed = ++this.clock;
      this.waiting.shift()?.();
    }
  }

  /** Forgets a conversation's state (e.g. /reset). */
  async reset(key: string): Promise<void> {
    const held = this.held.get(key);
    if (held) {
      this.held.delete(key);
      await held.pool.give(held.sequence);
    }
    if (this.options.stateDir) await fs.rm(this.statePath(key), { force: true });
  }

  /**
   * Gives every sequence back (their states saved first, when a state folder is set), for a stop:
   * the next Conversations on the same engine, or the next process, starts with all of them.
   * Call it once no reply is running.
   */
  async close(): Promise<void> {
    for (const held of [...this.held.values()]) await this.release(held);
  }

  get activeCount(): number {
    return this.held.size;
  }

  /** The sequence conversation `key` holds, if it holds one. */
  sequenceOf(key: string): LlamaContextSequence | undefined {
    return this.held.get(key)?.sequence;
  }

  /**
   * The prompt's tokens. When it continues the last prompt and the reply as they were sampled, those
   * tokens are kept as they are: a sampled reply is often not tokenized the way its text would be,
   * and re-tokenizing it would make the sequence re-evaluate the whole reply.
   */
  private continuation(held: Held, prompt: Prompt): { text: string; tokens: Token[] } {
    const text = promptText(prompt.pieces);
    const last = held.last;
    if (last && text.startsWith(last.text)) {
      const rest = piecesFrom(prompt.pieces, last.text.length);
      if (rest.length > 0) return { text, tokens: [...last.tokens, ...this.engine.tokenizePieces(rest)] };
    }
    return { text, tokens: this.engine.tokenizePieces(prompt.pieces) };
  }

  private statePath(key: string): string {
    return path.join(this.options.stateDir as string, `${encodeURIComponent(key)}.state`);
  }

  /** Hands out sequences one acquisition at a time, so two never take the same free or idle one. */
  private acquiring: Promise<unknown> = Promise.resolve();

  private acquire(key: string, adapter?: AdapterChoice): Promise<Held> {
    const wanted = contextKey(adapter);
    const existing = this.held.get(key);
    if (existing && existing.contextKey === wanted) return Promise.resolve(existing);
    const next = this.acquiring.then(() => this.acquireNew(key, wanted, adapter));
    this.acquiring = next.catch(() => undefined);
    return next;
  }

  private async acquireNew(key: string, contextKey: string, adapter?: AdapterChoice): Promise<Held> {
    const existing = this.held.get(key);
    if (existing && existing.contextKey === contextKey) return existing;
    if (existing) await this.reset(key); // another adapter: the cached tokens mean nothing there
    const { pool } = await this.engine.context(adapter);
    while (pool.available === 0) {
      const idle = [...this.held.values()]
        .filter((h) => h.contextKey === contextKey && !h.busy)
        .sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!idle) {
        // Every sequence is generating: wait for one to finish, then look again.
        await new Promise<void>((resolve) => this.waiting.push(resolve));
        continue;
      }
      await this.release(idle);
    }
    const sequence = pool.take();
    if (this.options.stateDir) {
      const saved = this.statePath(key);
      const exists = await fs.stat(saved).then(
        () => true,
        () => false,
      );
      if (exists) {
        await sequence.loadStateFromFile(saved, { acceptRisk: true }).catch(() => sequence.clearHistory());
      }
    }
    const held: Held = { key, contextKey, sequence, pool, busy: false, lastUsed: ++this.clock };
    this.held.set(key, held);
    return held;
  }

  private async release(held: Held): Promise<void> {
    this.held.delete(held.key);
    if (this.options.stateDir) {
      await privateDir(this.options.stateDir); // a sequence's state is its conversation, in another form
      await held.sequence.saveStateToFile(this.statePath(held.key));
      await makePrivate([this.statePath(held.key)]);
    }
    await held.pool.give(held.sequence);
  }
}
