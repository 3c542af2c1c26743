import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { getLlama } from "node-llama-cpp";
import { joinSegments, type RenderTurn, renderSegments } from "../src/dataset/chatml.ts";
import { type ExportMessage, flattenText } from "../src/history/desktop-import/export-message.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine } from "../src/inference/engine.ts";
import { buildPrompt } from "../src/inference/prompt.ts";
import { fixtures, readJson } from "./support/fixtures.ts";
import { nextTokenProbabilities, topOneAgreement, topTokens } from "./support/llama-probabilities.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const python = path.join(root, "trainer/.venv/bin/python");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-adapter-test-"));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Prompts in the training format (ChatML, speaker as role, `>>> ` before each message). */
const texts = [
  "<|im_start|>Friend\n>>> hey, are you coming tonight?<|im_end|>\n<|im_start|>Me\n>>> yeah, around nine",
  "<|im_start|>Друг\n>>> привет, как дела? 🔥<|im_end|>\n<|im_start|>Я\n>>> норм, работаю",
  "<|im_start|>system\nTelegram chat · Ann, Bob · 2024-05-01 Wed 21:15<|im_end|>\n<|im_start|>Ann\n>>> did you see the game",
];

describe("a trainer-exported GGUF adapter in node-llama-cpp", () => {
  it("loads, changes the output, and agrees with PyTorch base + LoRA on the next token", async (t) => {
    assert.ok(fs.existsSync(python), "trainer/.venv is missing: npm test sets it up before the Node tests");
    const llama = await getLlama({ gpu: false, build: "never" });
    const model = await llama.loadModel({ modelPath: testModel() });
    try {
      const prompts = texts.map((text) => model.tokenize(text, true));
      fs.writeFileSync(path.join(scratch, "prompts.json"), JSON.stringify(prompts));
      execFileSync(
        python,
        [
          path.join(root, "test/support/make_adapter.py"),
          testModel(),
          scratch,
          path.join(scratch, "prompts.json"),
        ],
        {
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      const torch = JSON.parse(fs.readFileSync(path.join(scratch, "torch.json"), "utf8"));
      const adapter = path.join(scratch, "adapter.gguf");
      const tuned: number[][] = [];
      const base: number[][] = [];
      for (const tokens of prompts) {
        tuned.push(await topTokens(model, tokens, adapter));
        base.push(await topTokens(model, tokens));
      }
      // Tolerance: llama.cpp runs Q4_1 weights on 8-bit-rounded activations, PyTorch their fp32
      // dequantization; that flips near ties (the base alone differs at a few positions). A position
      // agrees when llama.cpp's top-1 is PyTorch's, or PyTorch rates it within 0.25 nats of its own
      // top-1; ≥95% must agree so, and ≥90% exactly. A dropped or mis-permuted adapter moves
      // log-probabilities by whole nats at a third of the positions, far outside this.
      const NEAR_TIE_NATS = 0.25;
      const {
        positions,
        exact: agree,
        tolerant,
        gaps,
      } = topOneAgreement(tuned, torch.tuned, torch.tuned_top, NEAR_TIE_NATS);
      const baseAgree = topOneAgreement(base, torch.base, [], 0).exact;
      const changed = tuned.flat().filter((token, p) => token !== base.flat()[p]).length;
      t.diagnostic(
        `top-1 agreement with PyTorch ${agree}/${positions} (base alone: ${baseAgree}/${positions}); adapter changed top-1 at ${changed}/${positions}; ` +
          `where they differ, PyTorch's log-prob gap to llama.cpp's choice: ${gaps.map((g) => g.toFixed(3)).join(", ")}`,
      );
      assert.ok(
        tolerant / positions >= 0.95,
        `top-1 agreement within ${NEAR_TIE_NATS} nats ${tolerant}/${positions}`,
      );
      assert.ok(agree / positions >= 0.9, `exact top-1 agreement ${agree}/${positions}`);
      assert.ok(changed / positions >= 0.2, `the adapter changed top-1 at ${changed}/${positions} positions`);
    } finally {
      await model.dispose();
      await llama.dispose();
    }
  });

  it("on a Qwen2 model (q/k not permuted) changes llama.cpp's log-probabilities as it changes PyTorch's", async (t) => {
    assert.ok(fs.existsSync(python), "trainer/.venv is missing: npm test sets it up before the Node tests");
    const llama = await getLlama({ gpu: false, build: "never" });
    try {
      const vocabulary = await llama.loadModel({ modelPath: testModel(), vocabOnly: true });
      const prompts = texts.map((text) => vocabulary.tokenize(text, true));
      await vocabulary.dispose();
      const out = path.join(scratch, "qwen2");
      fs.mkdirSync(out);
      fs.writeFileSync(path.join(out, "prompts.json"), JSON.stringify(prompts));
      execFileSync(
        python,
        [path.join(root, "test/support/make_qwen2.py"), testModel(), out, path.join(out, "prompts.json")],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      type Position = { ids: number[]; base: number[]; tuned: number[]; kl: number };
      const torch: { positions: Position[][] } = JSON.parse(
        fs.readFileSync(path.join(out, "torch.json"), "utf8"),
      );
      const model = await llama.loadModel({ modelPath: path.join(out, "base.gguf") });
      try {
        // The tokenizer metadata copied from SmolLM2 gives the same ids on the Qwen2 GGUF.
        assert.deepEqual(
          texts.map((text) => model.tokenize(text, true)),
          prompts,
          "the Qwen2 GGUF tokenizes like SmolLM2",
        );
        let positions = 0;
        let compared = 0;
        let baseError = 0; // max |log p_base(llama.cpp) − log p_base(PyTorch)|
        let deltaError = 0; // max |Δ(llama.cpp) − Δ(PyTorch)|, Δ = log p_tuned − log p_base of one token
        let deltaSize = 0; // sum of |Δ(llama.cpp)|: how far the adapter moves those tokens in llama.cpp
        let klError = 0; // max |KL(tuned‖base) in llama.cpp − in PyTorch| at one position
        let klSum = 0;
        let changed = 0; // positions where the adapter changes llama.cpp's top-1
        for (const [i, tokens] of prompts.entries()) {
          const base = await nextTokenProbabilities(model, tokens);
          const tuned = await nextTokenProbabilities(model, tokens, path.join(out, "adapter.gguf"));
          for (const [p, reference] of torch.positions[i]!.entries()) {
            const b = base[p]!;
            const u = tuned[p]!;
            positions++;
            if (u.keys().next().value !== b.keys().next().value) changed++;
            // The tokens PyTorch ranks in its top 8 with or without the adapter.
            for (const [j, id] of reference.ids.entries()) {
              const logBase = Math.log(b.get(id)!);
              const delta = Math.log(u.get(id)!) - logBase;
              baseError = Math.max(baseError, Math.abs(logBase - reference.base[j]!));
              deltaError = Math.max(deltaError, Math.abs(delta - (reference.tuned[j]! - reference.base[j]!)));
              deltaSize += Math.abs(delta);
              compared++;
            }
            let kl = 0;
            for (const [id, q] of u) if (q > 0) kl += q * (Math.log(q) - Math.log(b.get(id)!));
            klError = Math.max(klError, Math.abs(kl - reference.kl));
            klSum += kl;
          }
        }
        const figures =
          `${positions} positions, ${compared} (position, token) pairs: ` +
          `max |Δ llama.cpp − Δ PyTorch| ${deltaError.toFixed(4)} nats (mean |Δ| ${(deltaSize / compared).toFixed(3)}); ` +
          `base log-prob max error ${baseError.toFixed(4)}; KL(tuned‖base) mean ${(klSum / positions).toFixed(3)}, ` +
          `max error ${klError.toFixed(4)}; adapter changed llama.cpp's top-1 at ${changed}/${positions}`;
        t.diagnostic(figures);
        // Tolerances. Both sides run the same F32 weights; llama.cpp keeps its KV cache in F16 and sums
        // in another order: measured ≤0.002 nats on Δ and on the base, ≤0.002 on KL. With q/k exported
        // permuted (as for "llama") Δ was off by 3.7 nats and KL by 1.7; a dropped adapter (Δ = 0) would
        // be off by PyTorch's largest |Δ|, 3.7. So 0.05 nats on Δ and the base, 0.02 on KL: 10–25× the
        // noise, ~70× under a wrong export.
        assert.ok(baseError <= 0.05, `base log-probs agree within 0.05 nats: ${figures}`);
        assert.ok(deltaError <= 0.05, `tuned − base log-probs agree within 0.05 nats: ${figures}`);
        assert.ok(klError <= 0.02, `KL(tuned‖base) agrees within 0.02: ${figures}`);
        assert.ok(
          deltaSize / compared >= 0.05,
          `the adapter moves llama.cpp's log-probs (mean |Δ| ≥ 0.05): ${figures}`,
        );
        assert.ok(
          changed / positions >= 0.1,
          `the adapter changes llama.cpp's top-1 at ≥10% of positions: ${figures}`,
        );
      } finally {
        await model.dispose();
      }
    } finally {
      await llama.dispose();
    }
  });

  it("serves through the engine: the trainer's adapter fits and changes replies; another base's is refused", async () => {
    const smol = path.join(scratch, "adapter.gguf");
    const qwen = path.join(scratch, "qwen2", "adapter.gguf");
    assert.ok(fs.existsSync(smol) && fs.existsSync(qwen), "the two tests above wrote both adapters");
    const engine = await Engine.open({
      modelPath: testModel(),
      contextSize: 512,
      sequences: 1,
      threads: 1,
      sampling: { temperature: 0, topK: 1, topP: 1, minP: 0, repeatPenalty: 1 },
      maxReplyTokens: 16,
    });
    try {
      const facts = await engine.checkAdapter(smol);
      assert.equal(facts.baseFingerprint, engine.facts.fingerprint, "the adapter names this base");
      await assert.rejects(
        engine.checkAdapter(qwen),
        /architecture qwen2, the base is llama/,
        "qwen2 adapter refused",
      );
      const prompt = buildPrompt({
        header: "Telegram chat · Anna, Me · 2024-05-01 Wed 21:15",
        history: [],
        live: [{ speaker: "Anna", messages: ["hey, are you coming tonight?"] }],
        replyAs: "Me",
        maxTokens: 400,
        countTokens: engine.countTokens,
      });
      const conversations = new Conversations(engine);
      const plain = await conversations.reply("base", prompt);
      const tuned = await conversations.reply("tuned", prompt, { path: smol, scale: 1 });
      assert.notEqual(
        tuned.text,
        plain.text,
        `greedy replies differ: ${JSON.stringify([plain.text, tuned.text])}`,
      );
    } finally {
      await engine.dispose();
    }
  });
});

/** The messages of a Telegram export: whole-account (chats.list[].messages) or single-chat (messages). */
function exportMessages(data: any): ExportMessage[] {
  if (Array.isArray(data.messages)) return data.messages;
  return (data.chats?.list ?? []).flatMap((chat: any) => chat.messages ?? []);
}

/** Up to `count` message texts from the start of the 18 MB IRC export: its first MiB only, never parsed whole. */
function ircSample(count: number): string[] {
  const file = fs.openSync(fixtures.irc, "r");
  const buffer = Buffer.alloc(1 << 20);
  const read = fs.readSync(file, buffer, 0, buffer.length, 0);
  fs.closeSync(file);
  // The export is pretty-printed: a message's own string `text` sits alone on a line, six spaces in.
  const head = buffer.subarray(0, read).toString("utf8");
  return [...head.matchAll(/^ {6}"text": ("(?:[^"\\]|\\.)*"),?$/gm)]
    .map((match) => JSON.parse(match[1]!) as string)
    .filter((text) => text.length > 0)
    .slice(0, count);
}

/** Consecutive messages of a chat as training-format ChatML: one string per `size` messages. */
function chatmlSamples(messages: ExportMessage[], header: string, size: number): string[] {
  const samples: string[] = [];
  for (let start = 0; start < messages.length; start += size) {
    const turns: RenderTurn[] = [];
    for (const message of messages.slice(start, start + size)) {
      const speaker = message.from ?? "Deleted Account";
      const last = turns.at(-1);
      if (last?.speaker === speaker) last.messages.push(flattenText(message.text));
      else turns.push({ speaker, messages: [flattenText(message.text)], train: true });
    }
    samples.push(joinSegments(renderSegments(turns, header)));
  }
  return samples;
}

describe("the test model's tokenizer", () => {
  // transformers 5.24 builds the tokenizer of a GGUF whose tokenizer.ggml.pre is "smollm" with
  // GPT-2's ByteLevel split alone; llama.cpp's "smollm" pre-tokenizer first splits every digit off.
  // Whitespace before a digit then differed ("goals:\n\n1." → "\n\n" vs "\n", "\n") in 40 of
  // the 857 texts here, until load_base set the same pre-tokenizer (match_llama_cpp_pre_tokenizer).
  it("gives the same token ids in the trainer (transformers) and llama.cpp on real chat text", async (t) => {
    assert.ok(fs.existsSync(python), "trainer/.venv is missing: npm test sets it up before the Node tests");
    const telegram = [fixtures.ensia, fixtures.cuda].flatMap((file) =>
      exportMessages(readJson(file)).filter(
        (message) => message.type === "message" && flattenText(message.text).trim().length > 0,
      ),
    );
    const plain = [...telegram.map((message) => flattenText(message.text)), ...ircSample(300)];
    const chatml = [
      ...texts,
      ...chatmlSamples(telegram, "Telegram chat · fixture · 2024-09-21 Sat 13:19", 12),
      "<|im_start|>Ann\n>>> <|im_end|>",
    ];
    const all = [...plain, ...chatml];
    fs.writeFileSync(path.join(scratch, "texts.json"), JSON.stringify(all));
    execFileSync(
      python,
      [
        path.join(root, "test/support/tokenize_texts.py"),
        testModel(),
        path.join(scratch, "texts.json"),
        path.join(scratch, "tokens.json"),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const hf: { trainer: number[][]; gguf: number[][] } = JSON.parse(
      fs.readFileSync(path.join(scratch, "tokens.json"), "utf8"),
    );
    const llama = await getLlama({ gpu: false, build: "never" });
    const vocabulary = await llama.loadModel({ modelPath: testModel(), vocabOnly: true });
    try {
      const [imStart, imEnd] = ["<|im_start|>", "<|im_end|>"].map((special) => {
        const tokens = [...vocabulary.tokenize(special, true)];
        assert.equal(tokens.length, 1, `llama.cpp reads ${special} as one token, got [${tokens}]`);
        return tokens[0]!;
      });
      // Message text alone: no special tokens parsed (none is written in these messages). ChatML:
      // special tokens parsed, as the trainer (transformers) and the server (llama.cpp) both read a prompt.
      const ours = [
        ...plain.map((text) => [...vocabulary.tokenize(text, false)]),
        ...chatml.map((text) => [...vocabulary.tokenize(text, true)]),
      ];
      const mismatches: string[] = [];
      let ggufMismatches = 0; // transformers' own GGUF tokenizer, before anything load_base does
      let tokens = 0;
      for (const [i, text] of all.entries()) {
        const expected = ours[i]!;
        tokens += expected.length;
        if (JSON.stringify(hf.gguf[i]) !== JSON.stringify(expected)) ggufMismatches++;
        const theirs = hf.trainer[i]!;
        if (JSON.stringify(theirs) === JSON.stringify(expected)) continue;
        const at = theirs.findIndex((id, k) => id !== expected[k]);
        const around = (ids: number[]) => `[${ids.slice(Math.max(0, at - 2), at + 4)}]`;
        mismatches.push(
          `${JSON.stringify(text.slice(0, 160))}: from token ${at}, llama.cpp ${around(expected)} ` +
            `vs trainer ${around(theirs)}`,
        );
      }
      for (const [i, text] of chatml.entries()) {
        const ids = ours[plain.length + i]!;
        const starts = text.split("<|im_start|>").length - 1;
        const ends = text.split("<|im_end|>").length - 1;
        assert.equal(
          ids.filter((id) => id === imStart).length,
          starts,
          `<|im_start|> one token each in ${text}`,
        );
        assert.equal(ids.filter((id) => id === imEnd).length, ends, `<|im_end|> one token each in ${text}`);
      }
      const arabic = plain.filter((text) => /\p{Script=Arabic}/u.test(text)).length;
      const cyrillic = all.filter((text) => /\p{Script=Cyrillic}/u.test(text)).length;
      const emoji = all.filter((text) => /\p{Extended_Pictographic}/u.test(text)).length;
      t.diagnostic(
        `${plain.length} messages (${telegram.length} Telegram, ${plain.length - telegram.length} IRC) and ` +
          `${chatml.length} ChatML strings, ${tokens} tokens; ${arabic} with Arabic script, ${cyrillic} Cyrillic, ` +
          `${emoji} with emoji; ${mismatches.length} differ from the trainer's tokenizer, ` +
          `${ggufMismatches} from transformers' GGUF tokenizer`,
      );
      assert.equal(
        mismatches.length,
        0,
        `${mismatches.length} of ${all.length} texts tokenize differently in the trainer and llama.cpp:\n` +
          mismatches.slice(0, 10).join("\n"),
      );
    } finally {
      await vocabulary.dispose();
      await llama.dispose();
    }
  });
});
