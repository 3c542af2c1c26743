// A fully fine-tuned model (trainer method=full) exported as a whole GGUF: node-llama-cpp loads it
// and predicts the next tokens PyTorch predicts with the tuned weights.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { getLlama } from "node-llama-cpp";
import { topOneAgreement, topTokens } from "./support/llama-probabilities.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const python = path.join(root, "trainer/.venv/bin/python");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-full-model-test-"));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Held-out prompts in the training format: none of them is in the few examples the model trains on. */
const texts = [
  "<|im_start|>Friend\n>>> are you coming tonight? it's at 11 o'clock<|im_end|>\n<|im_start|>Me\n>>> ya ya",
  "<|im_start|>Друг\n>>> привет, как дела? 🔥<|im_end|>\n<|im_start|>Я\n>>> норм, работаю",
  "<|im_start|>system\nTelegram chat · Ann, Bob · 2024-05-01 Wed 21:15<|im_end|>\n<|im_start|>Ann\n>>> did you see the game",
];

describe("a fully fine-tuned model exported to GGUF", () => {
  it("loads in node-llama-cpp and agrees with PyTorch on the next token, in f16 and q8_0", async (t) => {
    assert.ok(fs.existsSync(python), "trainer/.venv is missing: npm test sets it up before the Node tests");
    const llama = await getLlama({ gpu: false, build: "never" });
    try {
      const vocabulary = await llama.loadModel({ modelPath: testModel(), vocabOnly: true });
      const prompts = texts.map((text) => vocabulary.tokenize(text, true));
      await vocabulary.dispose();
      fs.writeFileSync(path.join(scratch, "prompts.json"), JSON.stringify(prompts));
      execFileSync(
        python,
        [
          path.join(root, "test/support/make_full_model.py"),
          testModel(),
          scratch,
          path.join(scratch, "prompts.json"),
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      const torch = JSON.parse(fs.readFileSync(path.join(scratch, "torch.json"), "utf8"));
      // The tuned weights moved PyTorch's own predictions: the export has something to carry.
      const torchChanged = torch.tuned
        .flat()
        .filter((token: number, p: number) => token !== torch.base.flat()[p]).length;
      const positions = torch.tuned.flat().length;
      assert.ok(
        torchChanged >= 3,
        `training changed PyTorch's top-1 at ${torchChanged}/${positions} positions`,
      );
      for (const type of ["f16", "q8_0"]) {
        const model = await llama.loadModel({ modelPath: path.join(scratch, `model-${type}.gguf`) });
        try {
          const tuned: number[][] = [];
          for (const tokens of prompts) tuned.push(await topTokens(model, tokens));
          // Tolerance: PyTorch runs the tuned fp32 weights, llama.cpp their f16 (or 8-bit) rounding
          // with 8-bit-rounded activations; near ties may flip. A position agrees when llama.cpp's
          // top-1 is PyTorch's or within 0.25 nats of it; ≥95% must. q/k left unpermuted, or the
          // base's weights written instead of the tuned ones, fail this (the second: at the
          // positions where training moved PyTorch's top-1).
          const NEAR_TIE_NATS = 0.25;
          const agreement = topOneAgreement(tuned, torch.tuned, torch.tuned_top, NEAR_TIE_NATS);
          const followsBase = tuned
            .flat()
            .filter((token, p) => token === torch.base.flat()[p] && token !== torch.tuned.flat()[p]).length;
          t.diagnostic(
            `${type}: top-1 agreement with tuned PyTorch ${agreement.exact}/${agreement.positions} exact, ` +
              `${agreement.tolerant} within ${NEAR_TIE_NATS} nats; training moved PyTorch's top-1 at ${torchChanged}, ` +
              `llama.cpp sides with the untrained base at ${followsBase} of them`,
          );
          assert.ok(
            agreement.tolerant / agreement.positions >= 0.95,
            `${type}: ${agreement.tolerant}/${agreement.positions} agree`,
          );
          assert.ok(
            agreement.exact / agreement.positions >= 0.9,
            `${type}: ${agreement.exact}/${agreement.positions} agree exactly`,
          );
          assert.ok(
            followsBase <= torchChanged / 4,
            `${type}: llama.cpp follows the base at ${followsBase}/${torchChanged}`,
          );
        } finally {
          await model.dispose();
        }
      }
    } finally {
      await llama.dispose();
    }
  });
});
