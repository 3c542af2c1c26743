import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import type { Adapter, RunsRepository } from "../training/runs.repository.ts";
import { StoredModelError } from "./inference.errors.ts";
import { describeKind, Serving, storedModelFile } from "./serving.ts";

const store = fs.mkdtempSync(path.join(os.tmpdir(), "twin-model-store-"));
after(() => fs.rmSync(store, { recursive: true, force: true }));

function fullModel(overrides: Partial<Adapter>): Adapter {
  return {
    id: 7,
    runId: 7,
    baseModelId: 1,
    kind: "full",
    fileId: null,
    storePath: "run-7/model-f16.gguf",
    sha256: null,
    bytes: null,
    name: "run-7",
    metrics: null,
    active: true,
    createdAt: new Date(),
    baseName: "SmolLM2",
    ...overrides,
  };
}

describe("a full model in the model store", () => {
  const data = Buffer.from("GGUF and then some weights");
  fs.mkdirSync(path.join(store, "run-7"));
  fs.writeFileSync(path.join(store, "run-7/model-f16.gguf"), data);
  const sha256 = createHash("sha256").update(data).digest("hex");

  it("is served when its size and checksum are the ones the worker recorded", async () => {
    const file = await storedModelFile(store, fullModel({ sha256, bytes: data.length }));
    assert.equal(file, path.join(store, "run-7/model-f16.gguf"));
  });

  it("is refused when missing, truncated, altered or outside the store", async () => {
    await assert.rejects(
      storedModelFile(store, fullModel({ storePath: "run-8/model-f16.gguf", sha256, bytes: data.length })),
      /run-8\/model-f16\.gguf is missing — the bot and the workers must share TWIN_MODEL_STORE/,
    );
    await assert.rejects(
      storedModelFile(store, fullModel({ sha256, bytes: data.length + 1 })),
      new RegExp(`has ${data.length} bytes, the worker wrote ${data.length + 1}`),
    );
    await assert.rejects(
      storedModelFile(store, fullModel({ sha256: "0".repeat(64), bytes: data.length })),
      /does not match the checksum the worker recorded/,
    );
    await assert.rejects(
      storedModelFile(store, fullModel({ storePath: "../elsewhere.gguf", sha256, bytes: 1 })),
      StoredModelError,
    );
  });

  it("is described by kind and size", () => {
    assert.equal(describeKind({ kind: "lora", bytes: null }), "LoRA adapter");
    assert.equal(describeKind({ kind: "full", bytes: 270_000_000 }), "full model, 270 MB");
    assert.equal(describeKind({ kind: "full", bytes: 15_240_000_000 }), "full model, 15.2 GB");
  });
});

describe("the served choice", () => {
  it("is in place when a refresh returns, even while another refresh was loading it", async () => {
    const data = Buffer.from("a fully tuned model");
    fs.mkdirSync(path.join(store, "run-9"));
    fs.writeFileSync(path.join(store, "run-9/model-f16.gguf"), data);
    const model = fullModel({
      id: 9,
      storePath: "run-9/model-f16.gguf",
      sha256: createHash("sha256").update(data).digest("hex"),
      bytes: data.length,
    });
    let active: Adapter | undefined;
    let releaseCheck = () => {};
    const checked = new Promise<void>((resolve) => {
      releaseCheck = resolve;
    });
    // Only the reads Serving makes for a full model; the check stalls until released.
    const runs = { activeAdapter: async () => active } as unknown as RunsRepository;
    const serving = new Serving({
      runs,
      modelName: "SmolLM2",
      adapterDir: store,
      scale: 1,
      modelStore: store,
      checkAdapter: async () => undefined,
      checkFullModel: () => checked,
    });
    await serving.refresh();
    assert.equal(serving.adapter(), undefined, "the base alone before any run");

    active = model;
    const watch = serving.refresh(); // the bot's periodic watch starts loading the new model
    let finishedRunSeen = false;
    const finishedRun = serving.refresh().then(() => {
      finishedRunSeen = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(finishedRunSeen, false, "the second refresh waits for the load in progress");
    releaseCheck();
    await finishedRun;
    assert.equal(serving.adapter()?.label, "adapter:9", "served once the refresh returned");
    await watch;
  });
});
