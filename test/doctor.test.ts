import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { getLlama, type Llama, type LlamaModelOptions } from "node-llama-cpp";
import type { Repositories } from "../src/app.ts";
import { loadConfig } from "../src/config/config.ts";
import { doctorStatusLines } from "../src/doctor/status.ts";
import { Engine } from "../src/inference/engine.ts";
import { describePlacement } from "../src/inference/placement.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-doctor-test-"));
fs.chmodSync(dataDir, 0o755);
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

/** The real `twin` binary on the embedded database in a scratch data folder. */
function twin(env: NodeJS.ProcessEnv, ...args: string[]) {
  const full: NodeJS.ProcessEnv = { ...process.env, TWIN_DATA_DIR: dataDir, TWIN_WORKER: "external", ...env };
  delete full.DATABASE_URL;
  const result = spawnSync(process.execPath, [path.join(root, "bin/twin.js"), ...args], {
    cwd: root,
    env: full,
    encoding: "utf8",
    timeout: 300_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A personal chat in which the owner writes Russian, as a Telegram Desktop export. */
function writeCyrillicExport(): string {
  const owner = { id: 5001, name: "Иван Петров" };
  const friend = { id: 5002, name: "Anna" };
  const lines: [typeof owner, string][] = [
    [friend, "hi! are you coming?"],
    [owner, "привет, да, буду через десять минут"],
    [owner, "возьми мне кофе пожалуйста"],
    [friend, "ok"],
    [owner, "спасибо, ты лучшая"],
    [owner, "ok, see you"],
  ];
  const start = Date.UTC(2024, 4, 1, 18, 0, 0) / 1000;
  const messages = lines.map(([person, text], i) => ({
    id: i + 1,
    type: "message",
    date: new Date((start + i * 30) * 1000).toISOString().slice(0, 19),
    date_unixtime: String(start + i * 30),
    from: person.name,
    from_id: `user${person.id}`,
    text,
    text_entities: [{ type: "plain", text }],
  }));
  const file = path.join(dataDir, "result.json");
  fs.writeFileSync(
    file,
    JSON.stringify({
      personal_information: {
        user_id: owner.id,
        first_name: owner.name,
        last_name: "",
        phone_number: "",
        bio: "",
      },
      chats: { about: "", list: [{ name: friend.name, type: "personal_chat", id: friend.id, messages }] },
    }),
  );
  return file;
}

describe("twin doctor on this machine", { timeout: 900_000 }, () => {
  it("reports cpu, ram, disk, gpus, the served model and a recommendation as JSON", () => {
    const imported = twin({}, "import", writeCyrillicExport(), "--tz", "UTC");
    assert.equal(imported.code, 0, imported.stderr);
    const added = twin({}, "model", "add", testModel());
    assert.equal(added.code, 0, added.stderr);

    const run = twin({}, "doctor", "--json");
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.ok(report.cpu.cores >= 1 && typeof report.cpu.model === "string", JSON.stringify(report.cpu));
    assert.ok(Array.isArray(report.cpu.features));
    assert.ok(report.ram.totalGb > 0 && report.ram.availableGb > 0, JSON.stringify(report.ram));
    assert.ok(report.disk.freeGb > 0, JSON.stringify(report.disk));
    assert.equal(report.disk.path, dataDir);
    assert.ok(report.memoryBandwidth.gbPerSecond > 0, JSON.stringify(report.memoryBandwidth));
    assert.ok("backend" in report.gpus.serving && Array.isArray(report.gpus.serving.devices));
    assert.equal(typeof report.gpus.training.available, "boolean");
    if (report.gpus.training.available) assert.ok(Array.isArray(report.gpus.training.gpus));
    else assert.match(report.gpus.training.reason, /trainer/);
    // Of the owner's letters, 66 are Cyrillic and 8 ("ok, see you") Latin; Anna's are not counted.
    assert.ok(Math.abs(report.history.cyrillicShare - 66 / 74) < 1e-9, JSON.stringify(report.history));
    assert.equal(report.history.ownerMessages, 4);
    assert.equal(report.history.script, "cyrillic");
    const { serve, train } = report.recommendation;
    assert.match(serve.entry, /^qwen2\.5-/, "a Cyrillic history is recommended a Qwen entry");
    assert.ok(serve.tokensPerSecond > 0 && serve.basis.length > 0, JSON.stringify(serve));
    assert.ok(train.config === null || fs.existsSync(path.join(root, "trainer/configs", train.config)));
    assert.ok(
      serve.entries
        .filter((e: { name: string }) => e.name.startsWith("smollm2"))
        .every((e: { language: boolean }) => !e.language),
    );
    // The registered test model, loaded as the bot loads it, and timed.
    assert.equal(report.served.name, "SmolLM2-135M-Instruct.Q4_1");
    assert.ok(report.served.placement, `loaded: ${report.served.error}`);
    assert.ok(report.served.measured.tokensPerSecond > 0, JSON.stringify(report.served.measured));
    assert.ok(Array.isArray(report.missing));
  });

  it("prints the report in words, and says so when the trainer's environment is missing", () => {
    const run = twin({ TWIN_TRAINER_PYTHON: path.join(dataDir, "no-such-python") }, "doctor", "--no-model");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^This machine\n {2}CPU {14}/);
    assert.match(run.stdout, /\nRecommended\n {2}Serve: qwen2\.5-/);
    assert.match(run.stdout, /not loaded \(--no-model\)/);
    assert.match(run.stdout, /- the trainer's Python environment is missing \(.*no-such-python\)/);
  });

  it("refuses a TWIN_GPU it does not know, naming the variable", () => {
    const run = twin({ TWIN_GPU: "rocm" }, "doctor", "--no-model");
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /Configuration error in TWIN_GPU: must be one of auto, cuda, vulkan, metal, off/,
    );
  });
});

describe("serving when the GPU cannot hold the model", { timeout: 300_000 }, () => {
  it("falls back to the CPU with one log line, and the engine measures its replies' speed", async () => {
    // This machine has no GPU: node-llama-cpp's CPU build stands behind a report of a CUDA GPU
    // whose load with gpuLayers "auto" fails for lack of memory, as a too small card's does.
    const real = await getLlama({ gpu: false, build: "never" });
    const loads: LlamaModelOptions["gpuLayers"][] = [];
    const gpuReport = new Proxy(real, {
      get(target, property) {
        if (property === "gpu") return "cuda";
        if (property === "getGpuDeviceNames") return async () => ["NVIDIA GeForce GT 1030"];
        if (property === "getVramState")
          return async () => ({ total: 2e9, used: 1.9e9, free: 1e8, unifiedSize: 0 });
        if (property === "loadModel")
          return async (options: LlamaModelOptions) => {
            loads.push(options.gpuLayers);
            if (options.gpuLayers === "auto")
              throw new Error("Not enough VRAM to fit the model with the specified settings");
            return target.loadModel(options);
          };
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as Llama;
    const lines: string[] = [];
    const asked: unknown[] = [];
    const engine = await Engine.open(
      {
        modelPath: testModel(),
        contextSize: 1024,
        sequences: 1,
        threads: 2,
        gpu: "cuda",
        sampling: { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
        maxReplyTokens: 32,
      },
      {
        getLlama: async (options) => {
          asked.push(options);
          return gpuReport;
        },
        log: (line) => lines.push(line),
      },
    );
    try {
      assert.deepEqual(
        asked,
        [{ gpu: "cuda", build: "never", logLevel: "error" }],
        "TWIN_GPU reaches getLlama",
      );
      assert.deepEqual(loads, ["auto", 0], "tried on the GPU with gpuLayers auto, then on the CPU");
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(
        lines[0] ?? "",
        /^the GPU \(NVIDIA GeForce GT 1030, cuda; 0\.1 GB free of 2\.0 GB\) cannot hold SmolLM2-135M-Instruct\.Q4_1\.gguf \(Not enough VRAM.*\): serving it on the CPU$/,
      );
      assert.equal(
        describePlacement(engine.placement),
        "CPU (the GPU NVIDIA GeForce GT 1030 could not hold it)",
      );
      assert.equal(engine.speed.rate(), undefined, "no reply yet");
      const measured = await engine.measureSpeed(24);
      assert.ok(measured && measured.tokensPerSecond > 0 && measured.tokens > 0, JSON.stringify(measured));
      assert.equal(engine.speed.rate(), undefined, "the measurement is not counted as a reply");
      const { pool } = await engine.context();
      const sequence = pool.take();
      const reply = await engine.reply(
        sequence,
        engine.model.tokenize("<|im_start|>Anna\n>>> hi, how are you?<|im_end|>\n<|im_start|>Me\n", true),
      );
      const speed = engine.speed.rate();
      assert.ok(reply.generatedTokens >= 2, `a reply of ${reply.generatedTokens} tokens: ${reply.text}`);
      assert.ok(speed && speed.tokensPerSecond > 0 && speed.replies >= 1, JSON.stringify(speed));
      // The bot's /status, in short: where the model runs and how fast, and what this machine serves best.
      const status = await doctorStatusLines({
        config: loadConfig({ TWIN_DATA_DIR: dataDir }),
        repositories: {
          history: {
            ownerScript: async () => ({
              messages: 10,
              cyrillicLetters: 90,
              latinLetters: 10,
              cyrillicShare: 0.9,
            }),
          },
          dataset: { latestReady: async () => undefined },
        } as unknown as Pick<Repositories, "history" | "dataset">,
        engine,
      });
      assert.equal(status.length, 2, status.join("\n"));
      assert.match(
        status[0] ?? "",
        /^Runs on: CPU \(the GPU NVIDIA GeForce GT 1030 could not hold it\) · [\d.]+ tokens\/s over the last (reply|\d+ replies)$/,
      );
      assert.match(
        status[1] ?? "",
        /^Recommended here: qwen2\.5-[\d.]+b \(~[\d.]+ tokens\/s on the CPU, estimated\) · `twin doctor` says why$/,
      );
    } finally {
      await engine.dispose();
    }
  });
});
