import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { getLlama, type LlamaModel } from "node-llama-cpp";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const python = path.join(root, "trainer/.venv/bin/python");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-adapter-test-"));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** llama.cpp's most likely next token at every position of `tokens`, with or without the adapter. */
async function topTokens(model: LlamaModel, tokens: number[], adapter?: string): Promise<number[]> {
  const context = await model.createContext({
    contextSize: 512,
    ...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
  });
  try {
    const sequence = context.getSequence();
    const steps = await sequence.controlledEvaluate(
      tokens.map(
        (token) =>
          [token, { generateNext: { probabilities: true } }] as [
            number,
            { generateNext: { probabilities: true } },
          ],
      ) as never,
    );
    return steps.map((step) => {
      const probabilities = (step as { next?: { probabilities?: Map<number, number> } })?.next?.probabilities;
      assert.ok(probabilities, "llama.cpp returned probabilities");
      return [...probabilities.entries()].reduce((best, entry) => (entry[1] > best[1] ? entry : best))[0];
    });
  } finally {
    await context.dispose();
  }
}

describe("a trainer-exported GGUF adapter in node-llama-cpp", () => {
  it("loads, changes the output, and agrees with PyTorch base + LoRA on the next token", async (t) => {
    assert.ok(fs.existsSync(python), "trainer/.venv is missing: npm test sets it up before the Node tests");
    const llama = await getLlama({ gpu: false, build: "never" });
    const model = await llama.loadModel({ modelPath: testModel() });
    try {
      const texts = [
        "<|im_start|>Friend\n>>> hey, are you coming tonight?<|im_end|>\n<|im_start|>Me\n>>> yeah, around nine",
        "<|im_start|>Друг\n>>> привет, как дела? 🔥<|im_end|>\n<|im_start|>Я\n>>> норм, работаю",
        "<|im_start|>system\nTelegram chat · Ann, Bob · 2024-05-01 Wed 21:15<|im_end|>\n<|im_start|>Ann\n>>> did you see the game",
      ];
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
      let agree = 0;
      let positions = 0;
      let changed = 0;
      for (const [i, tokens] of prompts.entries()) {
        const tuned = await topTokens(model, tokens, adapter);
        const base = await topTokens(model, tokens);
        tuned.forEach((token, p) => {
          positions++;
          if (token === torch.tuned[i][p]) agree++;
          if (token !== base[p]) changed++;
        });
      }
      t.diagnostic(
        `top-1 agreement with PyTorch ${agree}/${positions}; adapter changed top-1 at ${changed}/${positions}`,
      );
      // Tolerance: Q4_1 in llama.cpp vs its dequantized fp32 copy in PyTorch; top-1 on ≥95% of positions.
      assert.ok(agree / positions >= 0.95, `top-1 agreement ${agree}/${positions}`);
      assert.ok(changed / positions >= 0.2, `the adapter changed top-1 at ${changed}/${positions} positions`);
    } finally {
      await model.dispose();
      await llama.dispose();
    }
  });
});
