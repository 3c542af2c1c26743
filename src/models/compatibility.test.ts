import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { adapterProblems, fullModelProblems } from "./compatibility.ts";
import type { AdapterFacts, ModelFacts } from "./gguf-facts.ts";

const base: ModelFacts = {
  kind: "model",
  path: "base.gguf",
  architecture: "llama",
  layers: 2,
  fingerprint: "f".repeat(64),
  tunedFrom: undefined,
  shapes: new Map([
    ["blk.0.attn_q.weight", [576, 576]],
    ["blk.0.attn_k.weight", [576, 192]],
  ]),
};

function adapter(overrides: Partial<AdapterFacts> = {}): AdapterFacts {
  return {
    kind: "adapter",
    path: "a.gguf",
    architecture: "llama",
    baseFingerprint: base.fingerprint,
    baseLayers: 2,
    alpha: 16,
    shapes: new Map([
      ["blk.0.attn_q.weight.lora_a", [576, 8]],
      ["blk.0.attn_q.weight.lora_b", [8, 576]],
      ["blk.0.attn_k.weight.lora_a", [576, 8]],
      ["blk.0.attn_k.weight.lora_b", [8, 192]],
    ]),
    ...overrides,
  };
}

describe("adapter compatibility", () => {
  it("accepts an adapter made for this base", () => {
    assert.deepEqual(adapterProblems(base, adapter()), [], "no problems");
  });

  it("names each reason an adapter does not fit", () => {
    const problems = (a: AdapterFacts) => adapterProblems(base, a).join("; ");
    assert.match(problems(adapter({ architecture: "qwen2" })), /architecture qwen2, the base is llama/);
    assert.match(problems(adapter({ baseLayers: 24 })), /24 layers, this base has 2/);
    assert.match(problems(adapter({ baseFingerprint: "0".repeat(64) })), /trained on another base/);
    assert.match(problems(adapter({ baseFingerprint: undefined })), /records no base fingerprint/);
    const wrongShape = adapter({ shapes: new Map([["blk.0.attn_k.weight.lora_b", [8, 576]]]) });
    assert.match(
      problems(wrongShape),
      /lora_b is 8×576, which does not fit blk\.0\.attn_k\.weight \(576×192\)/,
    );
    const unknown = adapter({ shapes: new Map([["blk.9.attn_q.weight.lora_a", [576, 8]]]) });
    assert.match(problems(unknown), /no counterpart in the base/);
  });
});

describe("full model compatibility", () => {
  const tuned = (overrides: Partial<ModelFacts> = {}): ModelFacts => ({
    ...base,
    path: "tuned.gguf",
    fingerprint: "e".repeat(64),
    tunedFrom: base.fingerprint,
    ...overrides,
  });

  it("accepts a model tuned from this base, with the base's tensors", () => {
    assert.deepEqual(fullModelProblems(base, tuned()), [], "no problems");
  });

  it("refuses another base's tuning, other shapes, and a model without a record", () => {
    assert.match(
      fullModelProblems(base, tuned({ tunedFrom: "a".repeat(64) })).join(),
      /tuned from another base \(fingerprint aaaaaaaaaaaa…, this base ffffffffffff…\)/,
    );
    assert.match(
      fullModelProblems(base, tuned({ shapes: new Map([["blk.0.attn_q.weight", [576, 576]]]) })).join(),
      /tensor blk\.0\.attn_k\.weight is missing, the base's is 576×192/,
    );
    assert.match(
      fullModelProblems(base, tuned({ architecture: "qwen2", layers: 3 })).join(),
      /architecture qwen2, the base is llama.*3 layers, the base has 2/,
    );
    assert.match(
      fullModelProblems(base, tuned({ tunedFrom: undefined })).join(),
      /records no base fingerprint/,
    );
    assert.match(
      fullModelProblems(base, base).join(),
      /records no base fingerprint/,
      "the base itself is not a tuning",
    );
  });
});
