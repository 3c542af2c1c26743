import {
  type BatchItem,
  getLlama,
  type Llama,
  LlamaCompletion,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  LlamaText,
  SpecialTokensText,
  type Token,
} from "node-llama-cpp";
import { IM_END, IM_START } from "../dataset/chatml.ts";
import { adapterProblems, fullModelProblems } from "../models/compatibility.ts";
import { type AdapterFacts, type ModelFacts, readGgufFacts } from "../models/gguf-facts.ts";
import { type BatchLoad, gatheringStrategy, newBatchLoad, queuedSequenceId } from "./batching.ts";
import type { Prompt, PromptPiece } from "./prompt.ts";
import { splitReply } from "./prompt.ts";
import { SequencePool } from "./sequence-pool.ts";

/**
 * The engine: one base model loaded once; a context per adapter set (llama.cpp applies adapters
 * per context, so switching adapters is a new context on the same weights, never a reload); each
 * context holds several sequences, one per active conversation, evaluated in shared batches.
 * A fully fine-tuned model is other weights: it is loaded beside the base (one at a time).
 */

export type Sampling = {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  /** Fixed seed for reproducible replies (evaluation); undefined: random. */
  seed?: number | undefined;
};

export type EngineOptions = {
  modelPath: string;
  contextSize: number;
  /** Sequences per context: how many conversations are answered at once. */
  sequences: number;
  threads: number;
  batchSize?: number | undefined;
  /** Flash attention where the model supports it; default on (prompts evaluate faster on CPU too). */
  flashAttention?: boolean | undefined;
  sampling: Sampling;
  maxReplyTokens: number;
};

/**
 * What answers instead of the bare base: a LoRA adapter file and its scale, or (kind "full") a
 * fully fine-tuned model's GGUF. `label` names it for records ("adapter:3", a file name).
 */
export type AdapterChoice = {
  path: string;
  scale: number;
  label?: string | undefined;
  kind?: "lora" | "full" | undefined;
};

/** One context per choice: per adapter file and scale, per full model, or the base's. */
export function contextKey(choice: AdapterChoice | undefined): string {
  if (!choice) return "base";
  return choice.kind === "full" ? `full:${choice.path}` : `${choice.path}@${choice.scale}`;
}

export class AdapterMismatchError extends Error {}
export class EmptyReplyError extends Error {}

export type Reply = {
  messages: string[];
  /** The turn body as generated (before the stop), and its token ids as sampled. */
  text: string;
  tokens: Token[];
  /** Prompt tokens this reply had to evaluate (the rest was already in the sequence). */
  evaluatedTokens: number;
  generatedTokens: number;
  stopReason: string;
};

export type ReplyOptions = {
  signal?: AbortSignal | undefined;
  onText?: ((chunk: string) => void) | undefined;
  sampling?: Partial<Sampling> | undefined;
};

export function toLlamaText(pieces: PromptPiece[]): LlamaText {
  // Plain strings in a LlamaText are always tokenized as text: only our pieces become control tokens.
  return LlamaText(pieces.map((piece) => (piece.special ? new SpecialTokensText(piece.text) : piece.text)));
}

type ContextEntry = { context: LlamaContext; adapter: AdapterChoice | undefined; pool: SequencePool };

export class Engine {
  private readonly contexts = new Map<string, Promise<ContextEntry>>();
  private readonly loads = new WeakMap<LlamaContext, BatchLoad>();
  /** The fully fine-tuned model loaded beside the base, if any. */
  private tuned: { path: string; model: Promise<LlamaModel> } | undefined;

  private constructor(
    readonly options: EngineOptions,
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly facts: ModelFacts,
  ) {}

  static async open(options: EngineOptions): Promise<Engine> {
    const facts = await readGgufFacts(options.modelPath);
    if (facts.kind !== "model")
      throw new AdapterMismatchError(`${options.modelPath} is an adapter, not a model`);
    const llama = await getLlama({ gpu: "auto", build: "never", logLevel: "error" as never });
    try {
      const model = await llama.loadModel({ modelPath: options.modelPath });
      return new Engine(options, llama, model, facts);
    } catch (error) {
      await llama.dispose();
      throw error;
    }
  }

  /** Refuses an adapter made for another base, naming every reason. */
  async checkAdapter(path: string): Promise<AdapterFacts> {
    const facts = await readGgufFacts(path);
    if (facts.kind !== "adapter") throw new AdapterMismatchError(`${path} is a model, not a LoRA adapter`);
    const problems = adapterProblems(this.facts, facts);
    if (problems.length > 0) {
      throw new AdapterMismatchError(
        `adapter ${path} does not fit the base ${this.options.modelPath}: ${problems.join("; ")}`,
      );
    }
    return facts;
  }

  /** Refuses a fully tuned model that is not this base's, tuned (same tensors, same tokenizer). */
  async checkFullModel(path: string): Promise<ModelFacts> {
    const facts = await readGgufFacts(path);
    if (facts.kind !== "model")
      throw new AdapterMismatchError(`${path} is a LoRA adapter, not a whole model`);
    const problems = fullModelProblems(this.facts, facts);
    if (problems.length > 0) {
      throw new AdapterMismatchError(
        `model ${path} was not tuned from the base ${this.options.modelPath}: ${problems.join("; ")}`,
      );
    }
    return facts;
  }

  /** The context for an adapter, a full model or the bare base, created on first use. */
  context(adapter?: AdapterChoice): Promise<ContextEntry> {
    const key = contextKey(adapter);
    let entry = this.contexts.get(key);
    if (!entry) {
      entry = (async () => {
        const lora = adapter && adapter.kind !== "full";
        if (lora) await this.checkAdapter(adapter.path);
        const model = adapter?.kind === "full" ? await this.fullModel(adapter.path) : this.model;
        const load = newBatchLoad();
        let created: LlamaContext | undefined; // the strategy runs only once the context exists
        const sequenceOf = (item: BatchItem) => (created ? queuedSequenceId(created, item) : undefined);
        const context = await model.createContext({
          contextSize: this.options.contextSize,
          sequences: this.options.sequences,
          threads: this.options.threads,
          flashAttention: (this.options.flashAttention ?? true) && model.flashAttentionSupported,
          ...(this.options.batchSize ? { batchSize: this.options.batchSize } : {}),
          ...(lora ? { lora: { adapters: [{ filePath: adapter.path, scale: adapter.scale }] } } : {}),
          batching: { itemPrioritizationStrategy: gatheringStrategy(load, { sequenceOf }) },
        });
        created = context;
        this.loads.set(context, load);
        return { context, adapter, pool: new SequencePool(context) };
      })();
      entry.catch(() => this.contexts.delete(key));
      this.contexts.set(key, entry);
    }
    return entry;
  }

  /**
   * The full model at `path`, loaded once. One at a time beside the base (they are gigabytes):
   * loading another disposes the previous one and its context.
   */
  private fullModel(path: string): Promise<LlamaModel> {
    if (this.tuned?.path === path) return this.tuned.model;
    const previous = this.tuned;
    const model = (async () => {
      if (previous) await this.unloadFullModel(previous);
      await this.checkFullModel(path);
      return this.llama.loadModel({ modelPath: path });
    })();
    this.tuned = { path, model };
    model.catch(() => {
      if (this.tuned?.path === path) this.tuned = undefined;
    });
    return model;
  }

  private async unloadFullModel(tuned: { path: string; model: Promise<LlamaModel> }): Promise<void> {
    const key = contextKey({ path: tuned.path, scale: 1, kind: "full" });
    const entry = this.contexts.get(key);
    this.contexts.delete(key);
    await entry?.then(({ context }) => context.dispose()).catch(() => undefined);
    await tuned.model.then((model) => model.dispose()).catch(() => undefined);
  }

  /** What a context's batches have carried so far: batches, sequences and llama.cpp passes summed over them. */
  batching(context: LlamaContext): Readonly<BatchLoad> {
    return { ...(this.loads.get(context) ?? newBatchLoad()) };
  }

  countTokens = (text: string): number => this.model.tokenize(text, true).length;

  tokenize(prompt: Prompt): Token[] {
    return this.tokenizePieces(prompt.pieces);
  }

  tokenizePieces(pieces: PromptPiece[]): Token[] {
    return toLlamaText(pieces).tokenize(this.model.tokenizer);
  }

  /**
   * Generates the next turn on `sequence`, reusing whatever prefix it already holds. Stops at
   * <|im_end|> or a new <|im_start|>; an empty turn is retried once with a fresh seed.
   */
  async reply(
    sequence: LlamaContextSequence,
    prompt: Prompt | Token[],
    options: ReplyOptions = {},
  ): Promise<Reply> {
    // Batches wait for every sequence inside a reply (see batching.ts).
    const load = this.loads.get(sequence.context);
    if (load) load.replying++;
    try {
      return await this.generateReply(sequence, prompt, options);
    } finally {
      if (load) load.replying--;
    }
  }

  private async generateReply(
    sequence: LlamaContextSequence,
    prompt: Prompt | Token[],
    options: ReplyOptions,
  ): Promise<Reply> {
    const sampling = { ...this.options.sampling, ...options.sampling };
    const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
    const input = Array.isArray(prompt) ? prompt : toLlamaText(prompt.pieces);
    const stops = [LlamaText(new SpecialTokensText(IM_END)), LlamaText(new SpecialTokensText(IM_START))];
    let evaluated = 0;
    let generated = 0;
    for (let attempt = 0; attempt < 2; attempt++) {
      const before = sequence.tokenMeter.getState();
      const tokens: Token[] = [];
      const result = await completion.generateCompletionWithMeta(input, {
        maxTokens: this.options.maxReplyTokens,
        temperature: sampling.temperature,
        topK: sampling.topK,
        topP: sampling.topP,
        minP: sampling.minP,
        ...(sampling.seed !== undefined ? { seed: sampling.seed + attempt } : {}),
        repeatPenalty: sampling.repeatPenalty === 1 ? false : { penalty: sampling.repeatPenalty },
        customStopTriggers: stops,
        signal: options.signal,
        stopOnAbortSignal: true,
        onTextChunk: options.onText,
        onToken: (chunk) => tokens.push(...chunk),
      });
      const used = sequence.tokenMeter.diff(before);
      evaluated += used.usedInputTokens;
      generated += used.usedOutputTokens;
      const messages = splitReply(result.response);
      if (messages.length > 0 || options.signal?.aborted) {
        return {
          messages,
          text: result.response,
          tokens,
          evaluatedTokens: evaluated,
          generatedTokens: generated,
          stopReason: result.metadata.stopReason,
        };
      }
    }
    throw new EmptyReplyError("the model produced an empty reply twice");
  }

  async dispose(): Promise<void> {
    for (const entry of this.contexts.values()) {
      await entry.then(({ context }) => context.dispose()).catch(() => undefined);
    }
    this.contexts.clear();
    if (this.tuned) await this.unloadFullModel(this.tuned);
    await this.model.dispose();
    await this.llama.dispose();
  }
}

/**
 * Threads when the config says 0: every core. Measured on 2 cores with one libuv pool thread (as
 * bin/twin.js runs): one stream at 2 threads matches llama-bench at 2 threads and 8 conversations
 * at once decode 1.8× faster than at 1 thread. (With Node's default pool of 4, 2 threads were 3×
 * slower than 1 — the measurement an earlier version chose one thread on.)
 */
export function chooseThreads(configured: number, cores: number): number {
  return configured > 0 ? configured : Math.max(1, cores);
}
