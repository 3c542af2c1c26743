import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { getLlama } from "node-llama-cpp";
import { renderSegments } from "../src/dataset/chatml.ts";
import { openDatasetFolder } from "../src/dataset/dataset-folder.ts";
import { type Example, emptyChatStats } from "../src/dataset/examples.ts";
import { buildManifest } from "../src/dataset/manifest.ts";
import { emptyRedactionCounts } from "../src/dataset/redact.ts";
import { HubNotFoundError, PairMismatchError } from "../src/models/models.errors.ts";
import { createModelsRepository } from "../src/models/models.repository.ts";
import { pullModel } from "../src/models/pull.ts";
import { trainerWeightsTool } from "../src/models/weights.ts";
import { trainerDir, trainerPython } from "../src/training/local-worker.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { HubServer } from "./support/hub-server.ts";
import { topOneAgreement, topTokens } from "./support/llama-probabilities.ts";
import { testModel } from "./support/models.ts";
import { runTwin } from "./support/twin-cli.ts";

/**
 * `twin model pull --weights`: the same model's safetensors come from the hub double (which
 * huggingface_hub's snapshot_download, in the trainer, takes for huggingface.co through
 * HF_ENDPOINT) and are checked against the GGUF before the model is registered. The weights are
 * the test GGUF dequantized by transformers (the conversion training caches); weights of another
 * model are refused by name, with nothing registered.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const GGUF_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";
const GGUF_FILE = "smollm2-135m-instruct-q4_1.gguf";
const WEIGHTS_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct";

/** A safetensors file of float32 tensors (8-byte header length, JSON header, data). */
function safetensors(tensors: Record<string, number[]>): Buffer {
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [name, shape] of Object.entries(tensors)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(offset)]);
}

let hub: HubServer;
let database: TestDatabase;
let models: ReturnType<typeof createModelsRepository>;
let scratch: string;
let store: string;
let weights: string;
/** What the successful pull left in the store: the fetched safetensors folder and the GGUF. */
let pulled: { folder: string; gguf: string } | undefined;

before(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-weights-test-"));
  store = path.join(scratch, "models");
  // huggingface_hub's own cache (the trees it listed) stays in the scratch folder.
  process.env.HF_HOME = path.join(scratch, "hf-home");
  database = await (backends().at(-1) as { fresh(): Promise<TestDatabase> }).fresh();
  models = createModelsRepository(database);
  // The GGUF's weights as an HF folder, as the trainer converts it (cached after the first time).
  weights = execFileSync(
    trainerPython(undefined),
    [
      "-c",
      "import sys; from pathlib import Path; from twin_trainer.model import convert_gguf; print(convert_gguf(Path(sys.argv[1])))",
      testModel(),
    ],
    { cwd: trainerDir, encoding: "utf8" },
  ).trim();
  const config = JSON.parse(fs.readFileSync(path.join(weights, "config.json"), "utf8"));
  hub = await HubServer.start([
    { id: GGUF_REPO, files: { [GGUF_FILE]: { path: testModel() } } },
    {
      id: WEIGHTS_REPO,
      files: Object.fromEntries(
        fs.readdirSync(weights).map((file) => [file, { path: path.join(weights, file) }]),
      ),
    },
    {
      id: "twin-test/other-weights",
      files: {
        "config.json": Buffer.from(JSON.stringify(config)),
        "model.safetensors": safetensors({ "model.embed_tokens.weight": [4, 576] }),
      },
    },
    {
      id: "twin-test/bin-weights",
      files: { "config.json": Buffer.from(JSON.stringify(config)), "pytorch_model.bin": Buffer.alloc(64) },
    },
  ]);
});

after(async () => {
  await hub?.stop();
  await database?.close();
  await stopEmbedded();
  fs.rmSync(scratch, { recursive: true, force: true });
});

const execFileAsync = promisify(execFile);

/** Prompts in the training format, for the parity check: none of them is in the dataset. */
const PROMPTS = [
  "<|im_start|>system\nTelegram chat · Friend, Me · 2024-05-02 Thu 19:40<|im_end|>\n<|im_start|>Friend\n>>> are you coming to the match on saturday?<|im_end|>\n<|im_start|>Me\n>>> ",
  "<|im_start|>Friend\n>>> hey, are you coming tonight?<|im_end|>\n<|im_start|>Me\n>>> yeah, around nine",
  "<|im_start|>Друг\n>>> привет, как дела? 🔥<|im_end|>\n<|im_start|>Я\n>>> норм, работаю",
  "<|im_start|>system\nTelegram chat · Ann, Bob · 2024-05-01 Wed 21:15<|im_end|>\n<|im_start|>Ann\n>>> did you see the game",
];

/** A few chats as `twin dataset --out` writes them (format 2, with line counts and checksums): the owner, Me, answering a friend. */
async function writeDataset(out: string): Promise<void> {
  const chats: [string, string][] = [
    ["how is it going?", "all good, shipping the bot tonight 🔧"],
    ["want to grab lunch tomorrow?", "sure, noon at the usual place"],
    ["did you fix the build?", "yep, it was the cache again lol"],
    ["are you free this weekend?", "saturday yes, sunday is family day"],
    ["what are you reading now?", "a book on compilers, slow going"],
    ["can you send me the slides?", "sent, check your mail"],
    ["how was the trip?", "long but worth it, mountains were amazing"],
    ["coffee later?", "always, ping me at four"],
  ];
  const examples: Example[] = chats.map(([question, answer], i) => ({
    id: `1:${i}`,
    chat_id: 2,
    started_at: `2024-05-0${1 + (i % 9)}T21:15:00Z`,
    split: i < chats.length - 2 ? "train" : "eval",
    speakers: [
      { id: 1, name: "Me" },
      { id: 2, name: "Friend" },
    ],
    segments: renderSegments(
      [
        { speaker: "Friend", messages: [question], train: false },
        { speaker: "Me", messages: [answer], train: true },
      ],
      `Telegram chat · Friend, Me · 2024-05-0${1 + (i % 9)} 21:15`,
    ),
  }));
  const folder = await openDatasetFolder(out);
  await folder.write(examples);
  const evalExamples = examples.filter((example) => example.split === "eval").length;
  await folder.finish(
    buildManifest({
      datasetId: 1,
      settings: { maxTokens: 256 },
      owner: { id: 1, name: "Me" },
      source: "model-weights.test.ts",
      stats: emptyChatStats(),
      chats: 1,
      examples: { train: examples.length - evalExamples, eval: evalExamples },
      names: new Map([
        [1, "Me"],
        [2, "Friend"],
      ]),
      redactions: emptyRedactionCounts(),
    }),
  );
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

describe("twin model pull --weights", () => {
  it("fetches the weights through HF_ENDPOINT with the trainer, checks them against the GGUF and registers both", async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: database.config.databaseUrl,
      TWIN_DATA_DIR: path.join(scratch, "data"),
      TWIN_MODEL_STORE: store,
      HF_ENDPOINT: hub.endpoint,
    };
    delete env.HF_TOKEN;
    const { code, stdout, stderr } = await runTwin(
      ["model", "pull", `hf:${GGUF_REPO}/${GGUF_FILE}`, "--name", "smol", "--weights", WEIGHTS_REPO],
      { cwd: scratch, env },
    );
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^registered smol: llama, 30 layers, 94 MB/m);
    const folder = path.join(store, "hub", WEIGHTS_REPO);
    assert.ok(
      stderr.includes(`fetching ${WEIGHTS_REPO}@${hub.commitOf(WEIGHTS_REPO)}: 6 files, `),
      `pinned to the listed commit: ${stderr}`,
    );
    assert.match(
      stderr,
      /^one model: llama, 30 layers, 272 tensors of matching shape, 49,152 tokens, values of 272 tensors within their quantization's tolerance$/m,
    );

    const row = await models.byName("smol");
    assert.equal(row?.hfSource, WEIGHTS_REPO, "the worker finds the fetch by the hub id, in the same store");
    assert.equal(
      sha256(path.join(folder, "model.safetensors")),
      hub.sha256Of(`${WEIGHTS_REPO}/model.safetensors`),
    );
    const record = JSON.parse(fs.readFileSync(path.join(folder, ".twin-weights.json"), "utf8"));
    assert.deepEqual(record.files, fs.readdirSync(weights).sort(), "the whole fetch is recorded");
    assert.equal(row?.hfRevision, hub.commitOf(WEIGHTS_REPO), "the commit fetched and checked is pinned");
    assert.equal(row?.weightsFingerprint, record.fingerprint, "with the fingerprint of what was checked");
    assert.match(String(row?.weightsFingerprint), /^[0-9a-f]{64}$/);
    assert.ok(
      hub.log.every((request) => !request.authorized),
      "no token was sent: none was set",
    );
    pulled = { folder, gguf: row!.ggufPath };
  });

  it("trains from the fetched safetensors, and the adapter exported for the pulled GGUF agrees with PyTorch in llama.cpp", async (t) => {
    assert.ok(pulled, "the pull above fetched the weights");
    const work = path.join(scratch, "trained");
    const dataset = path.join(work, "dataset");
    await writeDataset(dataset);
    const python = trainerPython(undefined);
    const run = (args: string[]) =>
      execFileAsync(python, args, { cwd: trainerDir, env: process.env, maxBuffer: 64 << 20 });
    const timings: string[] = [];
    const timed = async <T>(label: string, step: () => Promise<T>): Promise<T> => {
      const started = Date.now();
      const result = await step();
      timings.push(`${label} ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return result;
    };

    // Three steps at a high rate (LoRA's B starts at zero): enough to move top-1 tokens visibly,
    // not so high that the run wrecks the model (at 0.02 the held-out loss rose from 6.3 to 14.5).
    const output = path.join(work, "run");
    const trained = await timed("train", () =>
      run([
        "-m",
        "twin_trainer",
        "train",
        "--config",
        path.join(trainerDir, "configs/smollm2-135m-lora-cpu.yaml"),
        "--set",
        `base=${pulled!.folder}`,
        "--set",
        `dataset=${dataset}`,
        "--set",
        `output=${output}`,
        "--set",
        "max_steps=3",
        "--set",
        "learning_rate=0.005",
        "--set",
        "warmup_ratio=0",
        "--set",
        "tokens_per_batch=256",
        "--set",
        "eval_every=0",
        "--set",
        "save_every=0",
      ]),
    );
    const events = trained.stdout
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line));
    const done = events.find((event) => event.event === "done");
    assert.ok(done, `the run finished: ${trained.stdout.slice(-2000)}\n${trained.stderr.slice(-2000)}`);
    assert.equal(done.step, 3);
    const adapterDir = path.join(output, "adapter");
    const adapter = path.join(work, "adapter.gguf");
    await timed("export", () =>
      run([
        "-m",
        "twin_trainer",
        "export-gguf",
        "--adapter",
        adapterDir,
        "--base",
        pulled!.gguf,
        "--out",
        adapter,
      ]),
    );

    const llama = await getLlama({ gpu: false, build: "never" });
    const model = await llama.loadModel({ modelPath: pulled.gguf });
    try {
      const prompts = PROMPTS.map((text) => model.tokenize(text, true));
      fs.writeFileSync(path.join(work, "prompts.json"), JSON.stringify(prompts));
      // PyTorch: the fetched safetensors (the GGUF dequantized) with the trained adapter loaded by peft.
      await timed("pytorch", () =>
        execFileAsync(
          python,
          [
            path.join(root, "test/support/make_adapter.py"),
            pulled!.folder,
            work,
            path.join(work, "prompts.json"),
            "--adapter",
            adapterDir,
          ],
          { env: process.env, maxBuffer: 64 << 20 },
        ),
      );
      const torch = JSON.parse(fs.readFileSync(path.join(work, "torch.json"), "utf8"));
      const tuned: number[][] = [];
      const base: number[][] = [];
      await timed("llama.cpp", async () => {
        for (const tokens of prompts) {
          tuned.push(await topTokens(model, tokens, adapter, 1));
          base.push(await topTokens(model, tokens, undefined, 1));
        }
      });
      // The bars of adapter.test.ts's parity test (Q4_1 in llama.cpp against its fp32
      // dequantization in PyTorch flips near ties; see there).
      const NEAR_TIE_NATS = 0.25;
      const { positions, exact, tolerant, gaps } = topOneAgreement(
        tuned,
        torch.tuned,
        torch.tuned_top,
        NEAR_TIE_NATS,
      );
      const baseAgree = topOneAgreement(base, torch.base, [], 0).exact;
      const changed = tuned.flat().filter((token, p) => token !== base.flat()[p]).length;
      const torchChanged = torch.tuned
        .flat()
        .filter((token: number, p: number) => token !== torch.base.flat()[p]).length;
      t.diagnostic(
        `top-1 agreement with PyTorch ${exact}/${positions}, within ${NEAR_TIE_NATS} nats ${tolerant}/${positions} ` +
          `(base alone: ${baseAgree}/${positions}); the trained adapter changed top-1 at ${changed}/${positions} ` +
          `in llama.cpp, ${torchChanged}/${positions} in PyTorch; where they differ, PyTorch's log-prob gap: ` +
          `${gaps.map((g) => g.toFixed(3)).join(", ")}; held-out loss ${done.metrics.base.loss.toFixed(3)} (base) → ${done.metrics.tuned.loss.toFixed(3)} (tuned); ` +
          timings.join(", "),
      );
      assert.ok(
        tolerant / positions >= 0.95,
        `top-1 agreement within ${NEAR_TIE_NATS} nats ${tolerant}/${positions}`,
      );
      assert.ok(exact / positions >= 0.9, `exact top-1 agreement ${exact}/${positions}`);
      // Lower than the random LoRA's 20%: a trained adapter moves the model where three steps on a
      // few short chats pushed it (the chat format, the owner's replies), not everywhere at random,
      // so how many positions change depends on the prompts and the rate (measured: 76/157 at 0.005).
      // 5% keeps this about the adapter reaching llama.cpp at all: a dropped one changes nothing.
      assert.ok(
        changed / positions >= 0.05,
        `the adapter changed top-1 at ${changed}/${positions} positions`,
      );
    } finally {
      await model.dispose();
      await llama.dispose();
    }
  });

  it("a worker with the weights alone (a remote) fetches the pinned commit and checks the fingerprint the pull recorded", async () => {
    const row = await models.byName("smol");
    assert.ok(row?.weightsFingerprint && row.hfRevision, "the pull above recorded the pair");
    // The remote's side, as its worker runs it for a claimed run: the trainer's base_weights.
    const { HF_TOKEN: _token, ...withoutToken } = process.env;
    const fetchOnWorker = (repo: string, workerStore: string) =>
      execFileAsync(
        trainerPython(undefined),
        [
          "-c",
          `import json, sys
from twin_trainer.run_queue import Run
from twin_trainer.worker import WeightsMismatch, base_weights
run = Run(id=1, dataset_id=1, method="lora", config={}, attempts=1, base_name="smol", base_gguf="/not/on/this/worker.gguf",
          base_hf=sys.argv[1], base_fingerprint="0" * 64, base_model_id=1, base_architecture="llama",
          base_hf_revision=sys.argv[2], base_weights_fingerprint=sys.argv[3])
try:
    print(json.dumps({"folder": str(base_weights(run))}))
except WeightsMismatch as error:
    print(json.dumps({"mismatch": str(error)}))`,
          repo,
          String(row.hfRevision),
          String(row.weightsFingerprint),
        ],
        {
          cwd: trainerDir,
          env: { ...withoutToken, HF_ENDPOINT: hub.endpoint, TWIN_MODEL_STORE: workerStore },
        },
      ).then(({ stdout }) => JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}"));

    const since = hub.log.length;
    const fresh = path.join(scratch, "remote-store");
    assert.deepEqual(await fetchOnWorker(WEIGHTS_REPO, fresh), {
      folder: path.join(fresh, "hub", WEIGHTS_REPO),
    });
    const asked = hub.log
      .slice(since)
      .filter((r) => r.host === "hub")
      .map((r) => r.path);
    assert.ok(
      asked.some((p) => p.includes(String(row.hfRevision))) &&
        !asked.some((p) => /\/(revision|resolve)\/main\b/.test(p)),
      `fetched at the pinned commit, never main: ${asked.join(", ")}`,
    );

    // A mirror that serves other bytes at that commit: the fetch completes, the check refuses it.
    hub.corrupt.add(`${WEIGHTS_REPO}/model.safetensors`);
    try {
      const damaged = await fetchOnWorker(WEIGHTS_REPO, path.join(scratch, "damaged-store"));
      assert.match(
        String(damaged.mismatch),
        new RegExp(
          `the weights ${WEIGHTS_REPO}@${String(row.hfRevision).slice(0, 12)} here are not the ones checked against its GGUF at pull time \\(fingerprint [0-9a-f]{12}…, recorded ${String(row.weightsFingerprint).slice(0, 12)}…\\)`,
        ),
      );
    } finally {
      hub.corrupt.delete(`${WEIGHTS_REPO}/model.safetensors`);
    }
  });

  it("refuses weights of another model naming the first difference, and registers nothing", async () => {
    const pulled = pullModel(
      {
        models,
        hub: { endpoint: hub.endpoint, token: undefined },
        store,
        weights: trainerWeightsTool({ python: () => trainerPython(undefined), cwd: trainerDir }),
      },
      { source: `hf:${GGUF_REPO}/${GGUF_FILE}`, name: "mismatched", weights: "twin-test/other-weights" },
    );
    await assert.rejects(pulled, (error: Error) => {
      assert.ok(error instanceof PairMismatchError, String(error));
      assert.ok(
        error.message.includes(
          "are not the same model: blk.0.attn_norm.weight: in the GGUF, but the weights have no tensor for it — nothing registered",
        ),
        error.message,
      );
      return true;
    });
    assert.equal(await models.byName("mismatched"), undefined);
  });

  it("refuses a repository without safetensors before downloading anything", async () => {
    const since = hub.log.length;
    const pulled = pullModel(
      {
        models,
        hub: { endpoint: hub.endpoint, token: undefined },
        store,
        weights: trainerWeightsTool({ python: () => trainerPython(undefined), cwd: trainerDir }),
      },
      { source: `hf:${GGUF_REPO}/${GGUF_FILE}`, name: "bin", weights: "twin-test/bin-weights" },
    );
    await assert.rejects(pulled, (error: Error) => {
      assert.ok(error instanceof HubNotFoundError, String(error));
      assert.match(
        error.message,
        /twin-test\/bin-weights on .* has no safetensors weights with a config\.json/,
      );
      return true;
    });
    assert.deepEqual(
      hub.log.slice(since).filter((request) => request.host === "storage"),
      [],
      "no file was downloaded",
    );
    assert.equal(await models.byName("bin"), undefined);
  });
});
