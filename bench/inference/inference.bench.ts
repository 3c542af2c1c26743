/**
 * bench/inference — the engine against llama.cpp itself, concurrency, and sequence reuse.
 *
 *   (a) single stream: prompt tokens/s (512-token prompt) and generated tokens/s (128 tokens) of
 *       node-llama-cpp as the engine uses it, and of the product's own path (Engine.reply), against
 *       llama.cpp's own `llama-bench` built from the source node-llama-cpp ships — same model, same
 *       machine, same thread counts, same run — with flash attention off and on (the engine's
 *       default) on the test model, and on at every thread count on the 7B-shaped model below;
 *   (b) 1, 4 and 8 conversations at once on one context at the same thread count: total and
 *       per-conversation generated tokens/s and time to first token, beside llama.cpp's own
 *       `llama-batched-bench` on the same model (its 8-vs-1 ratio is what batching can give here) —
 *       on the test model, and at all cores on a model with a served 7B's layer shapes
 *       (synthetic_model.py): the test model fits in a server CPU's cache, so its decoding is
 *       compute-bound and batching gains little, unlike the 7B bases the twin serves;
 *   (c) second-turn time to first token on a ~1,500-token history, with the conversation's
 *       sequence reused versus re-evaluating the whole prompt.
 *
 *   npm run bench:inference [-- <model.gguf>] [--deployment-model <gguf> | --no-deployment-model]
 *     (default: the test model, SmolLM2-135M Q4_1, and the 7B-shaped model, Q4_K_M, written on
 *     first use by synthetic-model.sh: about 3 minutes and 0.8 GB)
 *
 * Run it through npm: the script sets UV_THREADPOOL_SIZE=1 as bin/twin.js does for the product.
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { getLlama, type LlamaContext, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { loadConfig } from "../../src/config/config.ts";
import { gatheringStrategy, newBatchLoad, queuedSequenceId } from "../../src/inference/batching.ts";
import { Conversations } from "../../src/inference/conversations.ts";
import { chooseThreads, Engine } from "../../src/inference/engine.ts";
import { buildPrompt, type PromptTurn } from "../../src/inference/prompt.ts";
import { SequencePool } from "../../src/inference/sequence-pool.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const args = parseArgs({
  allowPositionals: true,
  options: { "deployment-model": { type: "string" }, "no-deployment-model": { type: "boolean" } },
});
const modelPath =
  args.positionals[0] ??
  execFileSync("node", [path.join(root, "scripts/test-model.mjs")], { encoding: "utf8" }).trim();
const PROMPT = 512;
const GENERATE = 128;
const cores = os.availableParallelism();
const threadCounts = [...new Set([1, Math.max(1, Math.floor(cores / 2)), cores])];
const fmt = (n: number) => n.toFixed(1);
if (process.env.UV_THREADPOOL_SIZE !== "1") {
  process.stderr.write(
    "warning: UV_THREADPOOL_SIZE is not 1 — the engine runs slower than the product does\n",
  );
}
const llamaCppBin = execFileSync("bash", [path.join(root, "bench/inference/build-llama-bench.sh")], {
  encoding: "utf8",
  stdio: ["ignore", "pipe", "inherit"],
}).trim();

/** The middle element by `value` (the upper one of an even count). */
function median<T>(items: T[], value: (item: T) => number): T {
  return [...items].sort((a, b) => value(a) - value(b))[Math.floor(items.length / 2)] as T;
}

/** Filler text in many short lines, like a chat; enough for any prompt size used here. */
function chatText(lines: number): string[] {
  const words =
    "yeah no maybe tonight later cool lol ok sure why what when the a to is it at on for with".split(" ");
  return Array.from({ length: lines }, (_, i) =>
    Array.from({ length: 4 + (i % 9) }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(" "),
  );
}

async function generate(sequence: LlamaContextSequence, first: Token, count: number, onFirst?: () => void) {
  let produced = 0;
  for await (const _token of sequence.evaluate([first], { temperature: 0 })) {
    if (produced === 0) onFirst?.();
    if (++produced >= count) break;
  }
  return produced;
}

// ── (a) single stream ────────────────────────────────────────────────────────────────────────
/**
 * Prompt and generated tokens/s. The engine's generation is measured three ways: node-llama-cpp's
 * own token loop (sequence.evaluate, greedy) in a 2,048-token context and in one as small as
 * llama-bench's, and the product's path, Engine.reply.
 */
type Speeds = { pp: number; tg: number };
type EngineSpeeds = Speeds & { tgSmall: number; reply: number; replyTokens: number; replies: number };

/**
 * Engine.reply's generated tokens/s: replies with the config's sampling (seeds 1, 2, …) until
 * GENERATE tokens in all, each on a cleared sequence that already holds the prompt, so the time
 * is each reply's generation and its own set-up (node-llama-cpp evaluates the last prompt token
 * again for its logits). A reply can end early at <|im_end|>; then its set-up weighs more.
 */
async function replySpeed(engine: Engine, sequence: LlamaContextSequence, prompt: Token[]) {
  let tokens = 0;
  let seconds = 0;
  let replies = 0;
  while (tokens < GENERATE) {
    await sequence.clearHistory();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt);
    const started = performance.now();
    const reply = await engine.reply(sequence, prompt, { sampling: { seed: replies + 1 } });
    seconds += (performance.now() - started) / 1000;
    tokens += reply.generatedTokens;
    replies++;
  }
  return { rate: tokens / seconds, tokens, replies };
}

/** llama-bench, one repetition: prompt and generation tokens/s. */
function llamaBench(model: string, threads: number, flash: boolean): Speeds {
  const out = execFileSync(
    path.join(llamaCppBin, "llama-bench"),
    [
      ...["-m", model, "-t", String(threads), "-fa", flash ? "1" : "0"],
      ...["-p", String(PROMPT), "-n", String(GENERATE), "-r", "1", "-o", "json"],
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
  );
  const rows = JSON.parse(out) as { n_prompt: number; n_gen: number; avg_ts: number }[];
  return {
    pp: rows.find((r) => r.n_prompt > 0)?.avg_ts ?? Number.NaN,
    tg: rows.find((r) => r.n_gen > 0)?.avg_ts ?? Number.NaN,
  };
}

const ROUNDS = 3;
const defaults = loadConfig({}).inference;

/** (a) on `model` at every thread count, with flash attention as in `flashModes`; prints its table. */
async function singleStream(model: string, flashModes: boolean[]) {
  const llama = await getLlama({ gpu: false, build: "never" });
  const loaded = await llama.loadModel({ modelPath: model });
  // "prebuilt" (the package's binary) or "localBuild" (`npm run engine:build`, this machine's own).
  const binary = llama.buildType;
  const promptTokens = loaded.tokenize(chatText(400).join("\n"), false).slice(0, PROMPT);
  const rows: {
    threads: number;
    flash: boolean;
    engine: EngineSpeeds;
    reference: Speeds;
    smallContext: number;
  }[] = [];
  for (const threads of threadCounts) {
    for (const flash of flashModes) {
      const context = await loaded.createContext({
        contextSize: 2048,
        sequences: 1,
        threads,
        batchSize: PROMPT,
        flashAttention: flash,
      });
      // llama-bench generates its tg128 in a context of 128 tokens, and llama.cpp can decode
      // faster in a small context even when few cells are used (up to 16% at 2,048 against 256 on
      // an Intel machine here, no difference on an AMD one), so node-llama-cpp is also measured in
      // one that small (it rounds 128 up to 256).
      const small = await loaded.createContext({
        contextSize: GENERATE,
        sequences: 1,
        threads,
        batchSize: GENERATE,
        flashAttention: flash,
      });
      // The product's path: a sequence of an engine context as the bot gets one (the config's
      // context size, sequences, sampling), replying through LlamaCompletion with its stop triggers.
      const engine = await Engine.open({
        ...defaults,
        modelPath: model,
        threads,
        flashAttention: flash,
        maxReplyTokens: GENERATE,
      });
      const replySequence = (await engine.context()).pool.take();
      const replyPrompt = engine.tokenize(
        buildPrompt({
          header: "Telegram chat · Anna, Me · 2024-05-01 Wed 21:15",
          history: [],
          live: [{ speaker: "Anna", messages: ["tell me everything about your week, every detail"] }],
          replyAs: "Me",
          maxTokens: 1024,
          countTokens: engine.countTokens,
        }),
      );
      const sequence = context.getSequence();
      const smallSequence = small.getSequence();
      // Engine and llama-bench take turns, so both see the same minutes of a drifting machine.
      const engineRuns: EngineSpeeds[] = [];
      const reference: Speeds[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        await sequence.clearHistory();
        let started = performance.now();
        await sequence.evaluateWithoutGeneratingNewTokens(promptTokens);
        const pp = PROMPT / ((performance.now() - started) / 1000);
        await sequence.clearHistory();
        started = performance.now();
        const produced = await generate(sequence, promptTokens[0] as Token, GENERATE);
        const tg = produced / ((performance.now() - started) / 1000);
        await smallSequence.clearHistory();
        started = performance.now();
        const producedSmall = await generate(smallSequence, promptTokens[0] as Token, GENERATE - 1);
        const tgSmall = producedSmall / ((performance.now() - started) / 1000);
        const reply = await replySpeed(engine, replySequence, replyPrompt);
        engineRuns.push({
          pp,
          tg,
          tgSmall,
          reply: reply.rate,
          replyTokens: reply.tokens,
          replies: reply.replies,
        });
        reference.push(llamaBench(model, threads, flash));
      }
      const replyRun = median(engineRuns, (r) => r.reply);
      rows.push({
        threads,
        flash,
        engine: {
          pp: median(engineRuns, (r) => r.pp).pp,
          tg: median(engineRuns, (r) => r.tg).tg,
          tgSmall: median(engineRuns, (r) => r.tgSmall).tgSmall,
          reply: replyRun.reply,
          replyTokens: replyRun.replyTokens,
          replies: replyRun.replies,
        },
        reference: { pp: median(reference, (r) => r.pp).pp, tg: median(reference, (r) => r.tg).tg },
        smallContext: small.contextSize,
      });
      await engine.dispose();
      await small.dispose();
      await context.dispose();
    }
  }
  await loaded.dispose();
  await llama.dispose();

  process.stdout.write(
    `\n(a) single stream, ${path.basename(model)}, ${cores} cores, node-llama-cpp binary: ${binary}, medians of ${ROUNDS} alternating runs\n`,
  );
  process.stdout.write(
    "threads | flash attention | engine prompt t/s | llama-bench pp | generated t/s: node-llama-cpp, 2,048 context | same, small context | Engine.reply (tokens in replies) | llama-bench tg (128 context) | gen vs llama-bench: 2,048 / small / Engine.reply\n",
  );
  for (const { threads, flash, engine, reference, smallContext } of rows) {
    const ratio = (speed: number) => `${(speed / reference.tg).toFixed(2)}x`;
    process.stdout.write(
      `${threads} | ${flash ? "on" : "off"} | ${fmt(engine.pp)} | ${fmt(reference.pp)} | ${fmt(engine.tg)} | ${fmt(engine.tgSmall)} (${smallContext}) | ` +
        `${fmt(engine.reply)} (${engine.replyTokens} in ${engine.replies}) | ${fmt(reference.tg)} | ${ratio(engine.tg)} / ${ratio(engine.tgSmall)} / ${ratio(engine.reply)}\n`,
    );
  }
  if (flashModes.length < 2) return;
  for (const threads of threadCounts) {
    const [off, on] = [false, true].map((flash) =>
      rows.find((r) => r.threads === threads && r.flash === flash),
    );
    process.stdout.write(
      `flash attention on vs off, ${threads} thread(s): prompt ${((on?.engine.pp ?? 0) / (off?.engine.pp ?? Number.NaN)).toFixed(2)}x, ` +
        `generation ${((on?.engine.tg ?? 0) / (off?.engine.tg ?? Number.NaN)).toFixed(2)}x (the engine uses it by default)\n`,
    );
  }
}

/** llama.cpp's own batched decoding: generated tokens/s by number of parallel sequences. */
function llamaBatchedBench(model: string, threads: number): Map<number, number> {
  const out = execFileSync(
    path.join(llamaCppBin, "llama-batched-bench"),
    [
      ...["-m", model, "-t", String(threads), "-c", String(8 * 512), "-fa", "on"],
      ...["-npp", "200", "-ntg", "64", "-npl", "1,4,8", "--output-format", "jsonl"],
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
  );
  const rows = out
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { pl: number; speed_tg: number });
  return new Map(rows.map((row) => [row.pl, row.speed_tg]));
}

// ── (b) concurrent conversations ─────────────────────────────────────────────────────────────
/** 1, 4 and 8 conversations on one context of `model` at `threads`, beside llama-batched-bench. */
async function concurrency(model: string, threads: number) {
  const llama = await getLlama({ gpu: false, build: "never" });
  const loaded = await llama.loadModel({ modelPath: model });
  // As the engine's contexts: flash attention, batches that wait for every generating sequence
  // (here every sequence of the round is generating, as each conversation is inside a reply) in
  // sequence order, and sequences kept in a pool.
  const load = newBatchLoad();
  let created: LlamaContext | undefined;
  const context = await loaded.createContext({
    contextSize: 512,
    sequences: 8,
    threads,
    flashAttention: true,
    batching: {
      itemPrioritizationStrategy: gatheringStrategy(load, {
        sequenceOf: (item) => (created ? queuedSequenceId(created, item) : undefined),
      }),
    },
  });
  created = context;
  const pool = new SequencePool(context);
  const prompts = Array.from({ length: 8 }, (_, i) =>
    loaded
      .tokenize(
        chatText(40 + i)
          .slice(i)
          .join("\n"),
        false,
      )
      .slice(0, 200),
  );
  const measure = async (n: number) => {
    const sequences = Array.from({ length: n }, () => pool.take());
    load.replying = n;
    // Prompts first (evaluated together in shared batches), then generation; a conversation's
    // time to first token is the prompt phase plus its first generated token.
    const started = performance.now();
    await Promise.all(
      sequences.map((sequence, i) =>
        sequence.evaluateWithoutGeneratingNewTokens((prompts[i] as Token[]).slice(0, -1)),
      ),
    );
    const promptPhase = performance.now() - started;
    const generating = performance.now();
    const [batchesBefore, itemsBefore, passesBefore] = [load.batches, load.items, load.passes];
    const firsts: number[] = [];
    const produced = await Promise.all(
      sequences.map((sequence, i) =>
        generate(sequence, (prompts[i] as Token[]).at(-1) as Token, 64, () =>
          firsts.push(promptPhase + performance.now() - generating),
        ),
      ),
    );
    const total = produced.reduce((a, b) => a + b, 0) / ((performance.now() - generating) / 1000);
    const perBatch = (load.items - itemsBefore) / (load.batches - batchesBefore);
    const passes = (load.passes - passesBefore) / (load.batches - batchesBefore);
    load.replying = 0;
    for (const sequence of sequences) await pool.give(sequence);
    const ttft = firsts.reduce((a, b) => a + b, 0) / firsts.length;
    return { n, total, per: total / n, ttft, perBatch, passes };
  };
  // Rounds of 1, 4 and 8 interleaved, each round followed by one llama-batched-bench run, the
  // median kept per count: a shared machine drifts by 10-50% between minutes (most with a model
  // that streams its weights from memory), which one round each would read as a batching effect.
  const rounds: Awaited<ReturnType<typeof measure>>[][] = [[], [], []];
  const batchedRuns: Map<number, number>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, n] of [1, 4, 8].entries()) rounds[i]?.push(await measure(n));
    batchedRuns.push(llamaBatchedBench(model, threads));
  }
  const rows = rounds.map((measured) => median(measured, (row) => row.total));
  await context.dispose();
  await loaded.dispose();
  await llama.dispose();
  process.stdout.write(
    `\n(b) conversations at once, ${path.basename(model)}, ${threads} thread(s), 200-token prompts, 64 tokens each (median of ${ROUNDS} rounds)\n`,
  );
  process.stdout.write(
    "conversations | total gen t/s | per conversation | mean time to first token (prompts included) | sequences per batch | llama.cpp passes per batch\n",
  );
  for (const row of rows) {
    process.stdout.write(
      `${row.n} | ${fmt(row.total)} | ${fmt(row.per)} | ${(row.ttft / 1000).toFixed(2)} s | ${row.perBatch.toFixed(2)} | ${row.passes.toFixed(2)}\n`,
    );
  }
  const one = rows[0]?.total ?? Number.NaN;
  const batched = new Map(
    [1, 4, 8].map((n) => [
      n,
      median(
        batchedRuns.map((run) => run.get(n) ?? Number.NaN),
        (v) => v,
      ),
    ]),
  );
  process.stdout.write(
    `llama-batched-bench, same prompts and lengths (median of ${ROUNDS} runs): ${[1, 4, 8].map((n) => `${n} at once ${fmt(batched.get(n) ?? Number.NaN)}`).join(", ")} gen t/s\n`,
  );
  const perRound = Array.from({ length: ROUNDS }, (_, r) => {
    const engine = (rounds[2]?.[r]?.total ?? 0) / (rounds[0]?.[r]?.total ?? Number.NaN);
    const reference = (batchedRuns[r]?.get(8) ?? 0) / (batchedRuns[r]?.get(1) ?? Number.NaN);
    return `${engine.toFixed(2)}x/${reference.toFixed(2)}x`;
  });
  process.stdout.write(`8 vs one in each round, engine/llama.cpp: ${perRound.join(", ")}\n`);
  process.stdout.write(
    `8 at once vs one: engine ${((rows[2]?.total ?? 0) / one).toFixed(2)}x, ` +
      `llama.cpp ${((batched.get(8) ?? 0) / (batched.get(1) ?? Number.NaN)).toFixed(2)}x total tokens/s\n`,
  );
}

const deploymentModel = args.values["no-deployment-model"]
  ? undefined
  : (args.values["deployment-model"] ??
    execFileSync("bash", [path.join(root, "bench/inference/synthetic-model.sh")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }).trim());
await singleStream(modelPath, [false, true]);
// A served 7B's shapes, with flash attention on as the engine runs: here the per-token cost of
// node-llama-cpp's loop (two thread-pool round trips and its JavaScript) is a small share of a decode.
if (deploymentModel) await singleStream(deploymentModel, [true]);
for (const threads of threadCounts) await concurrency(modelPath, threads);
if (deploymentModel) await concurrency(deploymentModel, cores);

// ── (c) second turn: reuse vs re-evaluation ──────────────────────────────────────────────────
const threads = chooseThreads(0, cores);
const engine = await Engine.open({
  modelPath,
  contextSize: 4096,
  sequences: 2,
  threads,
  sampling: { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, seed: 1 },
  maxReplyTokens: 24,
});
const lines = chatText(600);
const history: PromptTurn[] = [];
let historyTokens = 0;
for (let i = 0; historyTokens < 1500; i++) {
  const turn = { speaker: i % 2 ? "Me" : "Anna", messages: lines.slice(i * 2, i * 2 + 2) };
  history.push(turn);
  historyTokens += engine.countTokens(
    `<|im_start|>${turn.speaker}\n>>> ${turn.messages.join("\n>>> ")}<|im_end|>\n`,
  );
}
const promptFor = (live: PromptTurn[]) =>
  buildPrompt({
    header: "Telegram chat · Anna, Me · 2024-05-01 Wed 21:15",
    history,
    live,
    replyAs: "Me",
    maxTokens: 3800,
    countTokens: engine.countTokens,
  });
const timeToFirstToken = async (conversations: Conversations, key: string, live: PromptTurn[]) => {
  const started = performance.now();
  let first = Number.NaN;
  const reply = await conversations.reply(key, promptFor(live), undefined, {
    onText: () => {
      if (Number.isNaN(first)) first = performance.now() - started;
    },
  });
  return { ms: first, reply };
};
const warm = new Conversations(engine);
const live: PromptTurn[] = [{ speaker: "Anna", messages: ["so are you coming tonight?"] }];
const opening = await timeToFirstToken(warm, "warm", live);
live.push(
  { speaker: "Me", messages: opening.reply.messages },
  { speaker: "Anna", messages: ["ok cool, at nine"] },
);
const reused = await timeToFirstToken(warm, "warm", live);
const cold = await timeToFirstToken(new Conversations(engine), "cold", live);
const secondTurnTokens = promptFor(live).tokens;
await engine.dispose();
process.stdout.write(
  `\n(c) second turn on a ${secondTurnTokens}-token prompt (history ${historyTokens} tokens), ${threads} thread(s)\n`,
);
process.stdout.write(
  `time to first token: reused ${fmt(reused.ms)} ms (${reused.reply.evaluatedTokens} tokens evaluated), ` +
    `re-evaluated ${fmt(cold.ms)} ms (${cold.reply.evaluatedTokens} tokens): ${(cold.ms / reused.ms).toFixed(1)}x\n`,
);
