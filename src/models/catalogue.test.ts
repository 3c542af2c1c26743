import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { stringify } from "yaml";
import { CATALOGUE_PATH, catalogueEntry, loadCatalogue, servingMemoryGb } from "./catalogue.ts";
import { CatalogueError } from "./models.errors.ts";

describe("the model catalogue", () => {
  const catalogue = loadCatalogue();

  it("lists the Qwen2.5-Instruct family and SmolLM2, each with a GGUF repo, its weights and a licence", () => {
    const names = catalogue.models.map((m) => m.name);
    for (const size of ["0.5b", "1.5b", "3b", "7b", "14b"])
      assert.ok(names.includes(`qwen2.5-${size}`), size);
    for (const size of ["135m", "360m", "1.7b"]) assert.ok(names.includes(`smollm2-${size}`), size);
    for (const model of catalogue.models) {
      assert.match(model.gguf, /GGUF$/i, `${model.name}: a GGUF repo`);
      assert.ok(model.quants.includes("Q4_K_M"), `${model.name}: a Q4_K_M to serve`);
      assert.ok(!model.weights.toLowerCase().includes("gguf"), `${model.name}: weights, not a GGUF repo`);
      assert.ok(model.russian.length > 0, `${model.name}: says how it writes Russian`);
      assert.equal(model.languages.includes("ru"), !model.russian.startsWith("none"), model.name);
    }
    assert.match(
      catalogueEntry("qwen2.5-3b", catalogue).licence,
      /to verify/,
      "Qwen2.5-3B is not Apache-2.0",
    );
  });

  it("states serving memory as its formula gives it, and bigger models need more", () => {
    for (const model of catalogue.models) {
      const computed = servingMemoryGb(model, catalogue.context);
      assert.ok(
        Math.abs(computed - model.serve_gb) <= 0.1,
        `${model.name}: ${model.serve_gb} GB vs ${computed.toFixed(2)}`,
      );
      assert.ok(model.train_gb.qlora <= model.train_gb.lora, `${model.name}: QLoRA needs less than LoRA`);
    }
    const qwen = catalogue.models.filter((m) => m.name.startsWith("qwen"));
    const byParameters = [...qwen].sort((a, b) => a.shape.parameters - b.shape.parameters);
    assert.deepEqual(
      byParameters.map((m) => m.serve_gb),
      [...byParameters.map((m) => m.serve_gb)].sort((a, b) => a - b),
    );
  });

  it("refuses a malformed file naming the entry and field, and a base without single ChatML tokens", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-catalogue-"));
    try {
      const raw = loadCatalogue(CATALOGUE_PATH);
      const broken = structuredClone(raw);
      (broken.models[1] as { weights: string }).weights = "not a repo";
      fs.writeFileSync(path.join(dir, "broken.yaml"), stringify(broken));
      assert.throws(
        () => loadCatalogue(path.join(dir, "broken.yaml")),
        /models\.1\.weights: expected <org>\/<repo>/,
      );
      const noChatml = structuredClone(raw);
      (noChatml.models[0] as { chatml_tokens: boolean }).chatml_tokens = false;
      const name = noChatml.models[0]?.name as string;
      assert.throws(
        () => catalogueEntry(name, noChatml),
        (error: Error) => {
          assert.ok(error instanceof CatalogueError);
          assert.match(error.message, /not single tokens/);
          return true;
        },
      );
      assert.throws(() => catalogueEntry("llama-70b", raw), /not in the catalogue; it has qwen2\.5-0\.5b/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
