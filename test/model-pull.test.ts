import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { getLlama } from "node-llama-cpp";
import type { Catalogue } from "../src/models/catalogue.ts";
import { readGgufFacts } from "../src/models/gguf-facts.ts";
import {
  CatalogueError,
  DiskSpaceError,
  DownloadCorruptError,
  HubAccessError,
  HubUnreachableError,
  ModelSourceError,
  PullInterruptedError,
} from "../src/models/models.errors.ts";
import { createModelsRepository } from "../src/models/models.repository.ts";
import { type PullRequest, parseHubUri, pullModel, pullUri } from "../src/models/pull.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fakeModel, fakeSplitModel, randomTensors } from "./support/gguf-writer.ts";
import { closedEndpoint, HubServer } from "./support/hub-server.ts";
import { testModel } from "./support/models.ts";
import { writePersonalChatExport } from "./support/personal-chat-export.ts";
import { runTwin } from "./support/twin-cli.ts";

/**
 * `twin model pull` against a local hub (test/support/hub-server.ts) that behaves as
 * huggingface.co does: redirects to a storage host, X-Linked-* headers, byte ranges, gated
 * repositories. The real test model is pulled once, through the CLI and HF_ENDPOINT; the other
 * cases pull small GGUFs written here.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** ipull's chunk: what an interrupted download keeps, and where a resumed one restarts. */
const CHUNK = 5 * 1024 * 1024;
const TOKEN = "hf_theRightTokenForTheGatedRepo";

const tiny = fakeModel(randomTensors([2048, 2048]), "tiny");
const other = fakeModel(randomTensors([4096]), "other");
const big = fakeModel(randomTensors([1_400_000, 1_400_000]), "big"); // 11.2 MB: three chunks
const splitTensors = randomTensors([1024, 2048, 3072, 4096]);
const [splitOne, splitTwo] = fakeSplitModel(splitTensors, 2, "split") as [Buffer, Buffer];

const catalogue: Catalogue = {
  context: 8192,
  models: [
    {
      name: "tiny-test",
      gguf: "twin-test/tiny-GGUF",
      quants: ["Q4_K_M", "Q8_0"],
      weights: "twin-test/tiny",
      languages: ["en"],
      russian: "none",
      licence: "apache-2.0",
      chatml_tokens: true,
      shape: {
        parameters: 4096,
        layers: 1,
        hidden: 64,
        heads: 1,
        kv_heads: 1,
        intermediate: 64,
        vocabulary: 64,
      },
      serve_gb: 0.1,
      train_gb: { lora: 0.1, qlora: 0.1 },
    },
  ],
};

let hub: HubServer;
let database: TestDatabase;
let models: ReturnType<typeof createModelsRepository>;
let scratch: string;
let store: string;

before(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-pull-test-"));
  store = path.join(scratch, "models");
  // The server at TEST_DATABASE_URL when there is one (no server to start), else the embedded one.
  database = await (backends().at(-1) as { fresh(): Promise<TestDatabase> }).fresh();
  models = createModelsRepository(database);
  hub = await HubServer.start([
    {
      id: "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
      files: { "smollm2-135m-instruct-q4_1.gguf": { path: testModel() } },
    },
    {
      id: "twin-test/tiny-GGUF",
      files: { "tiny-q4_k_m.gguf": tiny },
      manifests: { Q4_K_M: "tiny-q4_k_m.gguf" },
    },
    { id: "twin-test/other-GGUF", files: { "other.gguf": other } },
    { id: "twin-test/big-GGUF", files: { "big.gguf": big } },
    {
      id: "twin-test/split-GGUF",
      files: {
        "Q4_K_M/split-Q4_K_M-00001-of-00002.gguf": splitOne,
        "Q4_K_M/split-Q4_K_M-00002-of-00002.gguf": splitTwo,
      },
      manifests: { Q4_K_M: "Q4_K_M/split-Q4_K_M-00001-of-00002.gguf" },
    },
    { id: "twin-test/gated-GGUF", files: { "gated.gguf": other }, gated: { token: TOKEN } },
  ]);
});

after(async () => {
  await hub?.stop();
  await database?.close();
  await stopEmbedded();
  fs.rmSync(scratch, { recursive: true, force: true });
});

function pull(request: PullRequest, options: { token?: string; endpoint?: string; freeBytes?: number } = {}) {
  return pullModel(
    {
      models,
      hub: { endpoint: options.endpoint ?? hub.endpoint, token: options.token },
      store,
      catalogue: () => catalogue,
      ...(options.freeBytes !== undefined ? { freeBytes: async () => options.freeBytes as number } : {}),
    },
    request,
  );
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/** Requests for a file's bytes (resolve GETs and the storage host's) since log entry `since`. */
function fileGets(since: number, fileName: string) {
  return hub.log
    .slice(since)
    .filter((r) => r.method === "GET" && (r.host === "storage" || r.path.includes("/resolve/")))
    .filter((r) => r.host === "storage" || r.path.endsWith(fileName));
}

/** The chunks ipull records as complete in `<file>.ipull`: its JSON record follows the file's bytes. */
function completeChunks(temp: string, size: number): number {
  try {
    const record = JSON.parse(fs.readFileSync(temp).subarray(size).toString()) as { chunks: number[] };
    return record.chunks.filter((chunk) => chunk === 2).length;
  } catch {
    return 0;
  }
}

async function waitFor(condition: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("twin model pull", () => {
  it("reads a catalogue name as its GGUF repo at Q4_K_M, and hf: URIs as a file or a quantization", () => {
    assert.deepEqual(pullUri("qwen2.5-0.5b").uri, "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M");
    assert.equal(pullUri("tiny-test", () => catalogue).entry?.weights, "twin-test/tiny");
    assert.equal(pullUri("hf:a/b/c.gguf").entry, undefined);
    const withoutChatml = {
      ...catalogue,
      models: [{ ...(catalogue.models[0] as Catalogue["models"][0]), chatml_tokens: false }],
    };
    assert.throws(() => pullUri("tiny-test", () => withoutChatml), CatalogueError);
    assert.throws(() => pullUri("no-such-model", () => catalogue), /not in the catalogue/);

    assert.deepEqual(parseHubUri("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m"), {
      repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
      revision: "main",
      quant: "Q4_K_M",
    });
    assert.deepEqual(parseHubUri("hf:org/repo/sub/model-00001-of-00003.gguf#v1.0"), {
      repo: "org/repo",
      revision: "v1.0",
      file: "sub/model-00001-of-00003.gguf",
    });
    for (const bad of ["hf:org/repo", "hf:org/repo/readme.md", "hf:org/repo/../x.gguf"]) {
      assert.throws(() => parseHubUri(bad), ModelSourceError, bad);
    }
  });

  it("pulls the real model through HF_ENDPOINT with `twin model pull`: byte-identical, registered, default, and `twin chat` answers with it", async () => {
    const modelStore = path.join(scratch, "cli-store");
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: database.config.databaseUrl,
      TWIN_DATA_DIR: path.join(scratch, "data"),
      TWIN_MODEL_STORE: modelStore,
      HF_ENDPOINT: hub.endpoint,
    };
    delete env.HF_TOKEN;
    // Asynchronous: the hub answers from this process.
    const { code, stdout, stderr } = await runTwin(
      [
        "model",
        "pull",
        "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf",
        "--name",
        "smol",
        "--default",
      ],
      { cwd: scratch, env },
    );
    assert.equal(code, 0, stderr);
    assert.match(
      stdout,
      /^registered smol: llama, 30 layers, 94 MB, fingerprint [0-9a-f]{12}… \(default\)$/m,
    );
    assert.match(stderr, /1 file, 98 MB → .*cli-store\/hub\/HuggingFaceTB\/SmolLM2-135M-Instruct-GGUF/);
    // Off a terminal, the bar is plain lines: the first, then one every 30 s, and where it ended.
    assert.match(stderr, /^pulling smollm2-135m-instruct-q4_1\.gguf 0% \| 0\/98 MB \| 0\.0 MB\/s$/m);
    assert.match(stderr, /^pulling smollm2-135m-instruct-q4_1\.gguf 100% \| 98\/98 MB \| [\d.]+ MB\/s$/m);

    const row = await models.byName("smol");
    const file = path.join(
      modelStore,
      "hub/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf",
    );
    assert.equal(row?.ggufPath, file);
    assert.equal(row?.isDefault, true);
    assert.equal(sha256(file), sha256(testModel()), "byte-identical");
    assert.equal(
      row?.fingerprint,
      ((await readGgufFacts(testModel())) as { fingerprint: string }).fingerprint,
    );
    assert.deepEqual(fs.readdirSync(path.dirname(file)), [path.basename(file)], "no temporary file left");

    const llama = await getLlama({ gpu: false, build: "never" });
    const model = await llama.loadModel({ modelPath: file });
    try {
      assert.equal(model.tokenize("<|im_start|>", true).length, 1, "a working model with its ChatML tokens");
    } finally {
      await model.dispose();
    }

    // And `twin chat` answers with it: the pulled default is what it serves.
    delete env.TWIN_MODEL;
    const history = writePersonalChatExport(scratch, { id: 101, name: "Owner" }, { id: 202, name: "Anna" });
    const imported = spawnSync(process.execPath, [path.join(root, "bin/twin.js"), "import", history], {
      cwd: scratch,
      env,
      encoding: "utf8",
    });
    assert.equal(imported.status, 0, imported.stderr);
    const chat = spawnSync(process.execPath, [path.join(root, "bin/twin.js"), "chat", "--with", "Anna"], {
      cwd: scratch,
      env: { ...env, TWIN_MAX_REPLY_TOKENS: "24" },
      input: "are you around tonight?\n",
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(chat.status, 0, chat.stderr);
    assert.match(chat.stdout, /^(Anna> )?Owner: \S/m, `an answer from the pulled model: ${chat.stdout}`);
  });

  it("resumes an interrupted download from the chunks it kept, without starting over", async () => {
    const file = "twin-test/big-GGUF/big.gguf";
    const local = path.join(store, "hub/twin-test/big-GGUF/big.gguf");
    // The connection drops in the third chunk: the first two arrive, the third never completes.
    hub.cut = { file, at: 2 * CHUNK + 300_000 };
    const stop = new AbortController();
    const first = pull({ source: `hf:${file}`, name: "big", signal: stop.signal });
    await waitFor(() => completeChunks(`${local}.ipull`, big.length) === 2, "two chunks on disk");
    stop.abort(); // Ctrl-C
    await assert.rejects(first, (error: Error) => {
      assert.ok(error instanceof PullInterruptedError, String(error));
      assert.match(error.message, /kept in .*big-GGUF — run the same command again to resume/);
      return true;
    });
    assert.ok(fs.existsSync(`${local}.ipull`), "the partial file is kept");
    assert.ok(!fs.existsSync(local));
    assert.equal(await models.byName("big"), undefined);

    hub.cut = undefined;
    const since = hub.log.length;
    const { model } = await pull({ source: `hf:${file}`, name: "big" });
    const ranged = hub.downloads(file, since).filter((r) => r.range);
    assert.ok(ranged.length > 0, "the second run asked for byte ranges");
    for (const request of ranged) {
      assert.ok(
        (request.range?.start ?? 0) >= 2 * CHUNK,
        `asked for bytes ${request.range?.start}-: past what it had`,
      );
    }
    const resent = ranged.reduce((sum, r) => sum + r.sent, 0);
    assert.ok(resent <= big.length - 2 * CHUNK, `${resent} bytes again, not the whole ${big.length}`);
    assert.equal(sha256(local), hub.sha256Of(file));
    assert.equal(model.ggufPath, local);
    assert.ok(!fs.existsSync(`${local}.ipull`));
  });

  it("refuses a corrupted download by name, deletes it and registers nothing; a clean pull then works", async () => {
    const file = "twin-test/other-GGUF/other.gguf";
    const local = path.join(store, "hub/twin-test/other-GGUF/other.gguf");
    hub.corrupt.add(file);
    await assert.rejects(pull({ source: `hf:${file}`, name: "other" }), (error: Error) => {
      assert.ok(error instanceof DownloadCorruptError, String(error));
      assert.ok(error.message.startsWith(`${local}: sha256 `), error.message);
      assert.match(error.message, /deleted, nothing registered/);
      return true;
    });
    assert.ok(!fs.existsSync(local) && !fs.existsSync(`${local}.ipull`), "nothing half-written is left");
    assert.equal(await models.byName("other"), undefined);

    hub.corrupt.delete(file);
    await pull({ source: `hf:${file}`, name: "other" });
    assert.equal(sha256(local), hub.sha256Of(file));
  });

  it("says how to get into a gated repository (401 without HF_TOKEN, 403 with the wrong one), never showing the token", async () => {
    const source = "hf:twin-test/gated-GGUF/gated.gguf";
    const since = hub.log.length;
    const advice = `accept the licence at ${hub.endpoint}/twin-test/gated-GGUF, then set HF_TOKEN`;
    await assert.rejects(pull({ source, name: "gated" }), (error: Error) => {
      assert.ok(error instanceof HubAccessError, String(error));
      assert.match(error.message, /HF_TOKEN is not set \(401\)/);
      assert.ok(error.message.includes(advice), error.message);
      return true;
    });
    const wrong = "hf_aWrongTokenThatMustNotLeak";
    await assert.rejects(pull({ source, name: "gated" }, { token: wrong }), (error: Error) => {
      assert.ok(error instanceof HubAccessError, String(error));
      assert.match(error.message, /refused HF_TOKEN .*\(403\)/);
      assert.ok(error.message.includes(advice), error.message);
      assert.ok(!error.message.includes(wrong));
      return true;
    });
    assert.deepEqual(fileGets(since, "gated.gguf"), [], "refused before any download");
    assert.equal(await models.byName("gated"), undefined);

    const { model } = await pull({ source, name: "gated" }, { token: TOKEN });
    assert.equal(sha256(model.ggufPath), hub.sha256Of("twin-test/gated-GGUF/gated.gguf"));
    assert.ok(hub.downloads("twin-test/gated-GGUF/gated.gguf", since).every((r) => r.authorized));
  });

  it("says what failed when the mirror is down, and how to register a local file instead", async () => {
    const endpoint = await closedEndpoint();
    await assert.rejects(
      pull({ source: "hf:twin-test/tiny-GGUF/tiny-q4_k_m.gguf", name: "down" }, { endpoint, token: TOKEN }),
      (error: Error) => {
        assert.ok(error instanceof HubUnreachableError, String(error));
        assert.ok(
          error.message.includes(`cannot reach the model hub at ${endpoint} (ECONNREFUSED`),
          error.message,
        );
        assert.ok(error.message.includes("twin model add <file.gguf>"), error.message);
        assert.ok(!error.message.includes(TOKEN));
        return true;
      },
    );
    assert.equal(await models.byName("down"), undefined);
  });

  it("refuses with the numbers when the disk is too small, before any GET of the file", async () => {
    const since = hub.log.length;
    await assert.rejects(
      pull({ source: "hf:twin-test/tiny-GGUF/tiny-q4_k_m.gguf", name: "full" }, { freeBytes: 1000 }),
      (error: Error) => {
        assert.ok(error instanceof DiskSpaceError, String(error));
        assert.match(
          error.message,
          new RegExp(`needs ${tiny.length} bytes more .*the disk has 1000 bytes free`),
        );
        return true;
      },
    );
    assert.deepEqual(fileGets(since, "tiny-q4_k_m.gguf"), []);
    assert.equal(await models.byName("full"), undefined);
  });

  it("pulls a split GGUF whole by its quantization, registered with the fingerprint of the model as one file", async () => {
    const since = hub.log.length;
    const result = await pull({ source: "hf:twin-test/split-GGUF:q4_k_m" });
    assert.ok(hub.log.slice(since).some((r) => r.path === "/v2/twin-test/split-GGUF/manifests/Q4_K_M"));
    const folder = path.join(store, "hub/twin-test/split-GGUF/Q4_K_M");
    assert.deepEqual(result.files, [
      path.join(folder, "split-Q4_K_M-00001-of-00002.gguf"),
      path.join(folder, "split-Q4_K_M-00002-of-00002.gguf"),
    ]);
    assert.deepEqual(
      result.files.map((f) => fs.readFileSync(f)),
      [splitOne, splitTwo],
    );
    assert.equal(result.model.name, "split-Q4_K_M");
    assert.equal(result.model.ggufPath, result.files[0]);
    const whole = path.join(scratch, "split-as-one.gguf");
    fs.writeFileSync(whole, fakeModel(splitTensors, "split"));
    const facts = (await readGgufFacts(whole)) as { fingerprint: string };
    assert.equal(result.model.fingerprint, facts.fingerprint, "every part's tensors are in the fingerprint");
  });

  it("pulls a catalogue name as its Q4_K_M, named after the entry and with its HF weights", async () => {
    const since = hub.log.length;
    const { model, uri } = await pull({ source: "tiny-test", makeDefault: true });
    assert.equal(uri, "hf:twin-test/tiny-GGUF:Q4_K_M");
    assert.ok(hub.log.slice(since).some((r) => r.path === "/v2/twin-test/tiny-GGUF/manifests/Q4_K_M"));
    assert.equal(model.name, "tiny-test");
    assert.equal(model.hfSource, "twin-test/tiny");
    assert.equal(model.isDefault, true);
    assert.equal((await models.defaultModel())?.name, "tiny-test");
  });
});
