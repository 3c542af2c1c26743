// The bot's image, without a Docker engine: the Dockerfile installs and prunes the app with
// scripts/docker/install-app.sh, and this test runs that same script in a scratch copy of the app,
// then checks what is left (no CUDA, Vulkan or ARM binaries) and that the app runs from it. It also
// lints the Dockerfiles and the compose files (scripts/lint-dockerfiles.sh).
import assert from "node:assert/strict";
import { type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { BotApiServer } from "./support/bot-api-server.ts";
import { testModel } from "./support/models.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const x64 = process.arch === "x64" && process.platform === "linux";

/** What the Dockerfile copies into the image besides node_modules (.dockerignore drops tests). */
/** What the Dockerfile copies into the bot image (checked against it below). */
const APP_FILES = [
  "package.json",
  "package-lock.json",
  "bin",
  "src",
  "migrations",
  "scripts/docker",
  "trainer/configs",
  "trainer/twin_trainer",
];

/** The environment of a container started by docker-compose.yml minus what this test sets. */
function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    // The image sets no UV_THREADPOOL_SIZE: bin/twin.js sets 1 itself, as in production.
    if (key.startsWith("TWIN_") || key === "DATABASE_URL" || key === "UV_THREADPOOL_SIZE") continue;
    if (key.startsWith("npm_")) continue; // npm test's settings must not steer the inner npm ci
    env[key] = value;
  }
  return { ...env, NODE_ENV: "production", ...extra };
}

// The image runs the app as uid 1000 with the app's files owned by root: when this test runs as
// root, it does the same (setpriv), so a write outside /data or the temp folder would fail here too.
const APP_UID = 1000;
const dropRoot = process.getuid?.() === 0 && fs.existsSync("/usr/bin/setpriv");

/** The command line that runs node with `args` as the image's user (or as this process's). */
function asAppUser(args: string[]): [string, string[]] {
  if (!dropRoot) return [process.execPath, args];
  return [
    "/usr/bin/setpriv",
    [`--reuid=${APP_UID}`, `--regid=${APP_UID}`, "--clear-groups", process.execPath, ...args],
  ];
}

function output(result: SpawnSyncReturns<string>): string {
  return `exit ${result.status} ${result.signal ?? ""}\n${result.stdout}\n${result.stderr}`;
}

/** Every directory and file under `dir`, symbolic links not followed. */
function* walk(dir: string): Generator<{ full: string; name: string; dirent: fs.Dirent }> {
  for (const dirent of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, dirent.name);
    yield { full, name: dirent.name, dirent };
    if (dirent.isDirectory()) yield* walk(full);
  }
}

const EM_X86_64 = 62;
const MACHINES: Record<number, string> = { 3: "x86", 40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V" };

/** The ELF header's class and machine, or undefined when the file is not ELF. */
function elf(file: string): { bits: number; machine: number } | undefined {
  const header = Buffer.alloc(20);
  const fd = fs.openSync(file, "r");
  try {
    if (fs.readSync(fd, header, 0, 20, 0) < 20) return undefined;
  } finally {
    fs.closeSync(fd);
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const bits = header[4] === 2 ? 64 : 32;
  const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  return { bits, machine };
}

// Loads the test model through the scratch install's node-llama-cpp exactly as the engine asks for
// it (src/inference/engine.ts: gpu "auto", build "never"), then reports which binaries it mapped.
const ENGINE_CHECK = `
import fs from "node:fs";
import { getLlama, LlamaCompletion } from "node-llama-cpp";
const llama = await getLlama({ gpu: "auto", build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: process.env.TEST_MODEL_GGUF });
const tokens = model.tokenize("hello from the image");
const context = await model.createContext({ contextSize: 256 });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
const text = await completion.generateCompletion("The capital of France is", { maxTokens: 4, temperature: 0 });
const mapped = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").split("\\n")
  .map((line) => line.split(/\\s+/)[5] ?? "").filter((file) => /llama|ggml/.test(file)))];
console.log(JSON.stringify({
  gpu: llama.gpu, resolved: import.meta.resolve("node-llama-cpp"), tokens: tokens.length,
  roundTrip: model.detokenize(tokens), completion: text, mapped,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
`;

describe("the bot image's install and prune (scripts/docker/install-app.sh cpu)", {
  skip: !x64 && "x64 Linux only",
}, () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-image-"));
  const dataDir = path.join(scratch, "data");
  const home = path.join(scratch, "home");
  // Where compose mounts ./models (read-only), the test model linked in: /root is not readable by
  // the app's user.
  const model = path.join(scratch, "models", "test-model.gguf");
  /** The environment the app runs with in the image (its user's HOME, the /data volume). */
  const appEnv = (extra: NodeJS.ProcessEnv) => cleanEnv({ HOME: home, TWIN_DATA_DIR: dataDir, ...extra });
  const modules = path.join(scratch, "node_modules");
  let install: SpawnSyncReturns<string>;
  let sizes: { before: number; after: number } | undefined;

  before(
    () => {
      for (const entry of APP_FILES) {
        fs.cpSync(path.join(root, entry), path.join(scratch, entry), {
          recursive: true,
          filter: (source) => !source.endsWith(".test.ts") && !source.includes("__pycache__"),
        });
      }
      fs.chmodSync(scratch, 0o755);
      for (const dir of [dataDir, home]) {
        fs.mkdirSync(dir, { mode: 0o755 });
        if (dropRoot) fs.chownSync(dir, APP_UID, APP_UID);
      }
      fs.mkdirSync(path.dirname(model));
      const readableByAll = (fs.statSync(testModel()).mode & 0o004) !== 0;
      try {
        if (!readableByAll) throw new Error("a link would keep the cache's mode");
        fs.linkSync(testModel(), model);
      } catch {
        fs.copyFileSync(testModel(), model);
        fs.chmodSync(model, 0o644);
      }
      // Run as the Dockerfile does: the script itself (its mode and shebang count), in the app folder.
      install = spawnSync(path.join(scratch, "scripts/docker/install-app.sh"), ["cpu"], {
        cwd: scratch,
        env: cleanEnv({}),
        encoding: "utf8",
        timeout: 600_000,
      });
      const reported = install.stdout?.match(/node_modules (\d+) KiB before pruning, (\d+) KiB after/);
      if (reported) sizes = { before: Number(reported[1]), after: Number(reported[2]) };
    },
    { timeout: 660_000 },
  );
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it("copies what the Dockerfile copies, and plans a run from the trainer files it holds", () => {
    const dockerfile = fs.readFileSync(path.join(root, "Dockerfile"), "utf8");
    const cpuTarget = dockerfile.slice(
      dockerfile.indexOf(" AS cpu\n"),
      dockerfile.indexOf(" AS node-binary"),
    );
    const copied = [...cpuTarget.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] as string).split(" "),
    );
    assert.deepEqual(
      copied.sort(),
      APP_FILES.filter((file) => file !== "scripts/docker").sort(),
      "the test's copy is the image's",
    );
    // The image's Python has PyYAML only: the config command must need nothing else of the trainer.
    const config = spawnSync(
      path.join(root, "trainer/.venv/bin/python"),
      ["-m", "twin_trainer", "config", "--config", "configs/smollm2-135m-lora-cpu.yaml"],
      { cwd: path.join(scratch, "trainer"), encoding: "utf8" },
    );
    assert.equal(config.status, 0, output(config));
    assert.equal(typeof JSON.parse(config.stdout).tokens_per_batch, "number");
  });

  it("installs the production dependencies and prunes them to a fraction", (t) => {
    assert.equal(install.status, 0, output(install));
    assert.ok(sizes, `the script reports node_modules' size before and after pruning: ${install.stdout}`);
    const mb = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    t.diagnostic(`node_modules: ${mb(sizes.before)} before pruning, ${mb(sizes.after)} after`);
    assert.ok(
      sizes.after < sizes.before / 3,
      `pruned to under a third: ${mb(sizes.before)} → ${mb(sizes.after)}`,
    );
    // The CUDA build alone is over 500 MiB; the whole CPU install is about 200 MiB.
    assert.ok(sizes.after < 300 * 1024, `the CPU install stays small: ${mb(sizes.after)}`);
    assert.ok(
      !fs.existsSync(path.join(modules, "@biomejs")),
      "no devDependencies (biome) in a production install",
    );
    assert.ok(fs.existsSync(path.join(modules, "tsx")), "tsx, which runs the CLI, is installed");
  });

  it("keeps only the CPU build of node-llama-cpp for x64, and no CUDA, Vulkan or ARM binary anywhere", () => {
    assert.deepEqual(fs.readdirSync(path.join(modules, "@node-llama-cpp")), ["linux-x64"]);
    assert.ok(
      !fs.existsSync(path.join(modules, "node-llama-cpp/llama/gitRelease.bundle")),
      "llama.cpp's source bundle is pruned",
    );
    assert.ok(fs.existsSync(path.join(modules, "node-llama-cpp/llama/grammars")), "its grammars stay");

    const forbiddenDir =
      /cuda|vulkan|metal|darwin|win32|(^|[-_.+])(arm|arm64|armv7l|armhf|aarch64)([-_.+]|$)/i;
    const forbiddenFile = /^libggml-(cuda|vulkan|metal)|\.(dylib|dll|exe)$/i;
    const wrong: string[] = [];
    let native = 0;
    for (const { full, name, dirent } of walk(modules)) {
      const where = path.relative(modules, full);
      if (dirent.isDirectory()) {
        if (forbiddenDir.test(name)) wrong.push(`folder ${where}`);
        continue;
      }
      if (!dirent.isFile()) continue;
      if (forbiddenFile.test(name)) wrong.push(`file ${where}`);
      const header = elf(full);
      if (header) {
        native++;
        if (header.machine !== EM_X86_64 || header.bits !== 64) {
          wrong.push(`${where}: ELF for ${MACHINES[header.machine] ?? `machine ${header.machine}`}`);
        }
      } else if (name.endsWith(".node") || /\.so(\.\d+)*$/.test(name)) {
        wrong.push(`${where}: a native module that is not ELF (another platform's)`);
      }
    }
    assert.deepEqual(wrong, [], `binaries for other platforms or GPUs are left:\n${wrong.join("\n")}`);
    const llamaBins = path.join(modules, "@node-llama-cpp/linux-x64/bins/linux-x64");
    for (const file of ["llama-addon.node", "libggml-base.so", "libggml-cpu-x64.so"]) {
      assert.equal(elf(path.join(llamaBins, file))?.machine, EM_X86_64, `${file} is there, built for x86-64`);
    }
    assert.ok(native > 20, `the walk saw the native files (${native})`);
  });

  it("migrates the embedded PostgreSQL from the pruned install", () => {
    const migrated = spawnSync(...asAppUser(["bin/twin.js", "migrate"]), {
      cwd: scratch,
      env: appEnv({}),
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(migrated.status, 0, output(migrated));
  });

  it("loads the test model and generates with the pruned node-llama-cpp, on its CPU build", () => {
    fs.writeFileSync(path.join(scratch, "check-engine.mjs"), ENGINE_CHECK);
    const checked = spawnSync(...asAppUser(["check-engine.mjs"]), {
      cwd: scratch,
      env: appEnv({ TEST_MODEL_GGUF: model }),
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(checked.status, 0, output(checked));
    const report = JSON.parse(checked.stdout.trim().split("\n").at(-1) ?? "{}");
    assert.equal(report.gpu, false, "no GPU build is left to choose");
    assert.ok(
      String(report.resolved).startsWith(`file://${modules}/`),
      `resolved from the scratch install: ${report.resolved}`,
    );
    assert.equal(report.roundTrip, "hello from the image");
    assert.ok(report.tokens > 0, "the text became tokens");
    assert.ok(
      String(report.completion).trim().length > 0,
      `it generated text: ${JSON.stringify(report.completion)}`,
    );
    const addon = (report.mapped as string[]).filter((file) => file.endsWith("llama-addon.node"));
    assert.deepEqual(
      addon,
      [path.join(modules, "@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node")],
      `the scratch install's CPU addon is the one loaded: ${report.mapped.join(", ")}`,
    );
  });

  it("starts the bot from it: a clear error without a token, polling and answering with one", async () => {
    const missing = spawnSync(...asAppUser(["bin/twin.js", "bot"]), {
      cwd: scratch,
      env: appEnv({}),
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.notEqual(missing.status, 0, output(missing));
    assert.match(missing.stderr, /TWIN_BOT_TOKEN is not set/, output(missing));

    const token = "123456789:AAE-container_test_token_local_api_";
    const owner = { id: 424242, is_bot: false, first_name: "Owner" };
    const server = new BotApiServer(token);
    await server.start();
    try {
      const env = appEnv({
        TWIN_BOT_TOKEN: token,
        TWIN_OWNER_ID: String(owner.id),
        TWIN_BOT_API_ROOT: server.apiRoot,
        TWIN_MODEL: model,
      });
      const bot = spawn(...asAppUser(["bin/twin.js", "bot"]), { cwd: scratch, env });
      let stderr = "";
      bot.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      const exited = new Promise<number | null>((resolve) => bot.on("exit", (code) => resolve(code)));
      try {
        await server.waitFor("the bot polling", () => server.sent("getUpdates").length > 0);
        server.sendMessage(owner, { text: "/status" });
        await server.waitFor("the owner's status", () => server.sent("sendMessage", owner.id).length > 0);
      } catch (error) {
        bot.kill("SIGKILL");
        throw new Error(`${(error as Error).message}\n${stderr}`);
      }
      bot.kill("SIGTERM");
      assert.equal(await exited, 0, `a clean stop: ${stderr}`);
    } finally {
      await server.close();
    }
  });
});

describe("the container files' lint (scripts/lint-dockerfiles.sh)", () => {
  it("passes hadolint, shellcheck and the compose checks", (t) => {
    const lint = spawnSync("bash", [path.join(root, "scripts/lint-dockerfiles.sh")], {
      cwd: root,
      encoding: "utf8",
      timeout: 600_000,
    });
    if (lint.status === 3) {
      t.skip(`pip could not install the linters: ${lint.stderr.trim().split("\n").at(-1)}`);
      return;
    }
    assert.equal(lint.status, 0, output(lint));
    assert.match(lint.stdout, /lint-dockerfiles: ok/, output(lint));
  });
});
