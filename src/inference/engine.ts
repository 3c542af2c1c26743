import { randomInt } from "node:crypto";
import createDebug from "debug";
import {
  type BatchItem,
  getLlama,
  type Llama,
  LlamaCompletion,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type LlamaOptions,
  LlamaText,
  SpecialTokensText,
  type Token,
  TokenBias,
} from "node-llama-cpp";
import type { GpuSetting } from "../config/config.ts";
import { IM_END, IM_START, MESSAGE_PREFIX } from "../dataset/chatml.ts";
import { adapterProblems, fullModelProblems } from "../models/compatibility.ts";
import { type AdapterFacts, type ModelFacts, readGgufFacts } from "../models/gguf-facts.ts";
import { type BatchLoad, gatheringStrategy, newBatchLoad, queuedSequenceId } from "./batching.ts";
import {
  AdapterMismatchError,
  EmptyReplyError,
  GpuUnavailableError,
  RepeatedReplyError,
} from "./inference.errors.ts";
import { llamaGpuOption, loadPlacedModel, type Placement } from "./placement.ts";
import type { Prompt, PromptPiece } from "./prompt.ts";
import { splitReply } from "./prompt.ts";
import {
  COPY_RUN,
  closestRepeat,
  copyingTokens,
  cutToComplete,
  MAX_GENERATIONS,
  RECENT_REPLIES,
  REPEAT_THRESHOLD,
  roleLines,
} from "./reply-shape.ts";
import { SequencePool } from "./sequence-pool.ts";
import { type Speed, SpeedMeter } from "./speed.ts";

const debug = createDebug("twin:inference");

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
  /** Fixed seed for reproducible replies (evaluation; a retry takes the next one); undefined: random. */
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
  /** TWIN_GPU: the GPU backend to ask node-llama-cpp for; default "auto" (its best, else the CPU). */
  gpu?: GpuSetting | undefined;
  sampling: Sampling;
  /** The longest reply, in tokens: the cap on every per-reply limit (TWIN_MAX_REPLY_TOKENS). */
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

export type Reply = {
  messages: string[];
  /** The turn body as generated (before the stop, before any cut), and its token ids as sampled. */
  text: string;
  tokens: Token[];
  /** Prompt tokens this reply had to evaluate (the rest was already in the sequence), over all its generations. */
  evaluatedTokens: number;
  generatedTokens: number;
  /** Why the kept generation stopped: "maxTokens" when the limit cut it (its text was then cut back). */
  stopReason: string;
  /** Generations it took: retries of empty ones and the resample of a repeat included. */
  generations: number;
  /** The limit this reply was generated under, in tokens. */
  maxTokens: number;
  /** It was generated again because the first one repeated a recent reply. */
  resampled: boolean;
};

/** What opening an engine talks to: node-llama-cpp's getLlama (a test gives its own), and the log. */
export type EngineIo = {
  getLlama?: ((options: LlamaOptions) => Promise<Llama>) | undefined;
  /** Gets the one line saying the GPU could not hold the model; default: DEBUG=twin:inference. */
  log?: ((line: string) => void) | undefined;
};

export type ReplyOptions = {
  signal?: AbortSignal | undefined;
  /** Called with each generation's text as it comes; a retried or resampled generation streams again. */
  onText?: ((chunk: string) => void) | undefined;
  sampling?: Partial<Sampling> | undefined;
  /** This reply's limit in tokens (the imitated speaker's, reply-shape.ts), capped by `maxReplyTokens`. */
  maxTokens?: number | undefined;
  /** The prompt's speakers: a line with one of their names ends the reply (see splitReply). */
  speakers?: readonly string[] | undefined;
  /** The conversation's latest replies by the same side: one this close is resampled once (reply-shape.ts). */
  recentReplies?: readonly string[] | undefined;
};

export function toLlamaText(pieces: PromptPiece[]): LlamaText {
  // Plain strings in a LlamaText are always tokenized as text: only our pieces become control tokens.
  return LlamaText(pieces.map((piece) => (piece.special ? new SpecialTokensText(piece.text) : piece.text)));
}

const repeatedError = (similarity: number) =>
  new RepeatedReplyError(
    `the model repeated a recent reply (character-3-gram similarity ${similarity.toFixed(2)}) even when resampled`,
  );

/** Role lines given to llama.cpp as stop triggers (every one is still cut after generation). */
const MAX_ROLE_STOPS = 32;

type ContextEntry = { context: LlamaContext; adapter: AdapterChoice | undefined; pool: SequencePool };

export class Engine {
  private readonly contexts = new Map<string, Promise<ContextEntry>>();
  private readonly loads = new WeakMap<LlamaContext, BatchLoad>();
  /** The fully fine-tuned model loaded beside the base, if any. */
  private tuned: { path: string; model: Promise<LlamaModel> } | undefined;
  /** Decoding speed over the recent replies (tokens a second), for /status and `twin doctor`. */
  readonly speed = new SpeedMeter();

  private constructor(
    readonly options: EngineOptions,
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly facts: ModelFacts,
    /** Where the base runs: the CPU, or the GPU and how many of its layers. */
    readonly placement: Placement,
    private readonly log: (line: string) => void,
  ) {}

  static async open(options: EngineOptions, io: EngineIo = {}): Promise<Engine> {
    const facts = await readGgufFacts(options.modelPath);
    if (facts.kind !== "model")
      throw new AdapterMismatchError(`${options.modelPath} is an adapter, not a model`);
    const llama = await openLlama(options.gpu ?? "auto", io.getLlama ?? getLlama);
    const log = io.log ?? ((line: string) => debug("%s", line));
    try {
      const { model, placement } = await loadPlacedModel(llama, options.modelPath, log);
      return new Engine(options, llama, model, facts, placement, log);
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
      return (await loadPlacedModel(this.llama, path, this.log)).model;
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

  /**
   * Decodes up to `tokens` tokens after a short text, in a small context of its own on the base,
   * and returns the speed as the bot's replies count it (from the first generated token on): what
   * `twin doctor` measures before any reply was generated.
   */
  async measureSpeed(tokens = 48): Promise<Speed | undefined> {
    const context = await this.model.createContext({
      contextSize: 512,
      sequences: 1,
      threads: this.options.threads,
      flashAttention: (this.options.flashAttention ?? true) && this.model.flashAttentionSupported,
    });
    try {
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      const meter = new SpeedMeter(1);
      const timer = meter.timer();
      await completion.generateCompletion("Dear Anna, here is a long letter about my week. On Monday", {
        maxTokens: tokens,
        temperature: 0,
        onToken: (chunk) => timer.tick(chunk.length),
      });
      timer.stop();
      return meter.rate();
    } finally {
      await context.dispose();
    }
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
   * <|im_end|>, at a new <|im_start|> (as a token or as text) and at a role line; a turn the limit
   * stopped is cut back to its last complete message or sentence. A turn left empty is generated
   * again with another seed, MAX_GENERATIONS in all (then EmptyReplyError); one that repeats a
   * recent reply (`recentReplies`) is resampled once, with another seed and unable to copy it or any
   * recent reply (RepeatedReplyError when the resample repeats too: no reply rather than the same
   * one again).
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
    const maxTokens = Math.max(1, Math.min(options.maxTokens ?? Infinity, this.options.maxReplyTokens));
    const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
    const input = Array.isArray(prompt) ? prompt : toLlamaText(prompt.pieces);
    const speakers = options.speakers ?? (Array.isArray(prompt) ? [] : prompt.speakers);
    const roles = roleLines(speakers);
    const stops = [
      LlamaText(new SpecialTokensText(IM_END)),
      LlamaText(new SpecialTokensText(IM_START)),
      // The same strings written as plain text, and a role line after a message: a turn for someone else.
      LlamaText(IM_END),
      LlamaText(IM_START),
      ...roles.slice(0, MAX_ROLE_STOPS).map((role) => LlamaText(`\n${role}\n`)),
    ];
    const recent = (options.recentReplies ?? []).slice(-RECENT_REPLIES);
    // The recent replies as tokens, written as the model would (`>>> ` lines) and as plain text.
    const recentTokens = () =>
      recent.flatMap((text) => [
        sequence.model.tokenize(`${MESSAGE_PREFIX}${text.split("\n").join(`\n${MESSAGE_PREFIX}`)}`),
        sequence.model.tokenize(text),
      ]);
    const spent = { evaluatedTokens: 0, generatedTokens: 0 };
    /** The generation that repeated a recent reply, once one did. */
    let repeated: { tokens: Token[]; similarity: number } | undefined;
    for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
      const before = sequence.tokenMeter.getState();
      const tokens: Token[] = [];
      const timer = this.speed.timer();
      const result = await completion.generateCompletionWithMeta(input, {
        maxTokens,
        temperature: sampling.temperature,
        topK: sampling.topK,
        topP: sampling.topP,
        minP: sampling.minP,
        // Always a seed of our own: left unset, llama.cpp's is the clock's second, and a retry in
        // the same second would sample the very same turn again.
        seed: sampling.seed !== undefined ? sampling.seed + generation : randomInt(2 ** 31),
        repeatPenalty: sampling.repeatPenalty === 1 ? false : { penalty: sampling.repeatPenalty },
        // The resample of a repeat may not copy it, nor any recent reply, more than a few tokens in a row.
        ...(repeated ? { tokenBias: this.noCopying(sequence, [repeated.tokens, ...recentTokens()]) } : {}),
        customStopTriggers: stops,
        signal: options.signal,
        stopOnAbortSignal: true,
        onTextChunk: options.onText,
        onToken: (chunk) => {
          tokens.push(...chunk);
          timer.tick(chunk.length);
        },
      });
      timer.stop();
      const used = sequence.tokenMeter.diff(before);
      spent.evaluatedTokens += used.usedInputTokens;
      spent.generatedTokens += used.usedOutputTokens;
      const stopReason = result.metadata.stopReason;
      const messages = splitReply(
        stopReason === "maxTokens" ? cutToComplete(result.response) : result.response,
        speakers,
      );
      const reply: Reply = {
        messages,
        text: result.response,
        tokens,
        ...spent,
        stopReason,
        generations: generation + 1,
        maxTokens,
        resampled: repeated !== undefined,
      };
      if (options.signal?.aborted) return reply;
      if (messages.length === 0) continue;
      const similarity = closestRepeat(messages.join("\n"), recent);
      if (similarity < REPEAT_THRESHOLD) return reply;
      if (repeated) throw repeatedError(similarity);
      repeated = { tokens, similarity }; // resampled once, with the next seed
    }
    if (repeated) throw repeatedError(repeated.similarity); // and the resample said nothing
    throw new EmptyReplyError(`the model produced an empty reply ${MAX_GENERATIONS} times`);
  }

  /** A token bias, read before each sampled token, that forbids copying `sources` (reply-shape.ts). */
  private noCopying(sequence: LlamaContextSequence, sources: Token[][]): () => TokenBias {
    return () => {
      // The sequence's own model: a fully tuned model is not `this.model`, and a bias made for
      // another model's tokenizer makes node-llama-cpp's sampler hang, never returning the reply.
      const bias = new TokenBias(sequence.model.tokenizer);
      for (const token of copyingTokens(sequence.contextTokens.slice(-COPY_RUN), sources)) {
        bias.set(token as Token, "never");
      }
      return bias;
    };
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
 * node-llama-cpp with the GPU backend TWIN_GPU asks for ("auto": its best, else the CPU). A backend
 * asked for by name that cannot run here is a GpuUnavailableError naming the variable.
 */
export async function openLlama(
  setting: GpuSetting,
  load: NonNullable<EngineIo["getLlama"]> = getLlama,
): Promise<Llama> {
  try {
    return await load({ gpu: llamaGpuOption(setting), build: "never", logLevel: "error" as never });
  } catch (error) {
    if (setting === "auto" || setting === "off") throw error;
    throw new GpuUnavailableError(
      `TWIN_GPU=${setting}: node-llama-cpp cannot use ${setting} on this machine (${(error as Error).message}); set TWIN_GPU=auto to use the best backend there is (else the CPU), or off for the CPU`,
      { cause: error },
    );
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
