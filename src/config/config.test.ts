import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError } from "./config.errors.ts";
import {
  BOT_TOKEN_SECRET_LENGTH,
  botTokenProblem,
  childEnvironment,
  knownVariables,
  loadConfig,
  machineTimeZone,
  ownerTimeZone,
  secretVariables,
  variableDescriptions,
} from "./config.ts";

describe("config", () => {
  it("takes the owner's time zone from --tz/TWIN_TZ, else the stored one, else the machine's", () => {
    assert.equal(ownerTimeZone("Asia/Tehran", "Europe/Berlin"), "Asia/Tehran");
    assert.equal(ownerTimeZone(undefined, "Europe/Berlin"), "Europe/Berlin");
    assert.equal(ownerTimeZone(undefined, null), machineTimeZone());
  });

  it("fills in defaults when nothing is set", () => {
    const config = loadConfig({});
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.dataDir, path.resolve("./data"));
    assert.equal(config.importBatchSize, 25_000);
    assert.equal(config.timeZone, undefined, "the time zone falls back later: stored, then this machine's");
  });

  it("reads the variables it knows", () => {
    const config = loadConfig({
      DATABASE_URL: "postgres://u@h:5432/db",
      TWIN_TZ: "Europe/Moscow",
      TWIN_DATA_DIR: "/tmp/x",
      TWIN_IMPORT_BATCH: "500",
    });
    const { inference, memory, bot, userbot, training, ...rest } = config;
    assert.deepEqual(
      memory,
      { enabled: undefined, windows: undefined, indexAfterImport: true },
      "memory follows the model's dataset unless set; its index is kept anyway",
    );
    assert.equal(training.configFile, undefined, "unset: chosen for the base and the worker's GPUs");
    assert.equal(training.fullConfigFile, undefined);
    assert.deepEqual(userbot, { apiId: undefined, apiHash: undefined, sessionKey: undefined });
    assert.equal(bot.token, undefined);
    assert.deepEqual(rest, {
      databaseUrl: "postgres://u@h:5432/db",
      dataDir: "/tmp/x",
      timeZone: "Europe/Moscow",
      embeddedPgPort: 0,
      importBatchSize: 500,
    });
    assert.equal(inference.model, undefined, "no model: the default registered one is used");
    assert.deepEqual(
      inference.sampling,
      { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 },
      "explicit sampling defaults (node-llama-cpp alone would be greedy)",
    );
  });

  it("reads the bot settings and never echoes a bad token", () => {
    const token = "123456:AAH-secret_token_value_0123456789ab";
    const { bot } = loadConfig({
      TWIN_BOT_TOKEN: token,
      TWIN_OWNER_ID: "42",
      TWIN_BOT_API_ROOT: "http://127.0.0.1:9999/",
      TWIN_GROUPS: "-100123, -456",
      TWIN_WEBHOOK_URL: "https://twin.example.org/hook",
    });
    assert.equal(bot.token, token);
    assert.equal(bot.ownerId, 42);
    assert.equal(bot.apiRoot, "http://127.0.0.1:9999", "no trailing slash");
    assert.equal(bot.connectSeconds, 120, "the start-up tries for two minutes by default");
    assert.equal(loadConfig({ TWIN_BOT_CONNECT_S: "5" }).bot.connectSeconds, 5);
    assert.throws(() => loadConfig({ TWIN_BOT_CONNECT_S: "0" }), /TWIN_BOT_CONNECT_S/);
    assert.deepEqual(bot.groups, [-100123, -456]);
    assert.deepEqual(bot.webhook, { url: "https://twin.example.org/hook", port: 8080, secret: undefined });
    const bad = "123456:short-secret";
    assert.throws(
      () => loadConfig({ TWIN_BOT_TOKEN: bad }),
      (error: Error) =>
        error instanceof ConfigError &&
        /TWIN_BOT_TOKEN/.test(error.message) &&
        !error.message.includes("short-secret"),
      "the error names the variable, never the value",
    );
    assert.throws(() => loadConfig({ TWIN_GROUPS: "123" }), /TWIN_GROUPS/);
  });

  it("says what is wrong with a bot token's shape, never what the secret holds", () => {
    const secret = "AAE-0123456789_abcdefghijklmnopqrst";
    assert.equal(secret.length, BOT_TOKEN_SECRET_LENGTH, "the secret part of a real token: 35 characters");
    assert.equal(botTokenProblem(`123456789:${secret}`), undefined);
    const problems: [string, RegExp][] = [
      [secret, /has no colon/],
      [`bot123:${secret}`, /the bot id before the colon is not all digits/],
      [`:${secret}`, /the bot id before the colon is missing/],
      [`123456789:${secret.slice(0, 30)}`, /the secret after the colon has 30 characters instead of 35/],
      [`123456789:${secret}xy`, /the secret after the colon has 37 characters instead of 35/],
      [`123456789:${secret.slice(0, 34)}!`, /holds characters other than A-Z, a-z, 0-9, _ and -/],
      [`123456789:${secret}\n`, /spaces or line breaks around it/],
    ];
    for (const [token, problem] of problems) {
      const error = (() => {
        try {
          loadConfig({ TWIN_BOT_TOKEN: token });
        } catch (caught) {
          return caught as Error;
        }
        return undefined;
      })();
      assert.ok(error instanceof ConfigError, `refused: ${problem}`);
      assert.match(
        error.message,
        /^Configuration error in TWIN_BOT_TOKEN: must be the token @BotFather gives/,
      );
      assert.match(error.message, /<bot id>:<secret of 35 characters>/, "what a token looks like");
      assert.match(error.message, problem);
      assert.ok(!error.message.includes(secret.slice(0, 20)), "the secret is never echoed");
    }
  });

  it("reads the inference settings", () => {
    const { inference } = loadConfig({
      TWIN_MODEL: "/m/base.gguf",
      TWIN_ADAPTER: "/m/adapter.gguf",
      TWIN_ADAPTER_SCALE: "0.5",
      TWIN_CONTEXT_SIZE: "8192",
      TWIN_SEQUENCES: "4",
      TWIN_THREADS: "3",
      TWIN_TEMPERATURE: "0",
      TWIN_MAX_REPLY_TOKENS: "64",
    });
    assert.deepEqual(
      [inference.model, inference.adapter, inference.adapterScale, inference.contextSize],
      ["/m/base.gguf", "/m/adapter.gguf", 0.5, 8192],
      "paths and sizes",
    );
    assert.deepEqual(
      [inference.sequences, inference.threads, inference.sampling.temperature, inference.maxReplyTokens],
      [4, 3, 0, 64],
      "counts and sampling",
    );
    assert.throws(() => loadConfig({ TWIN_TOP_P: "1.5" }), /TWIN_TOP_P/);
    assert.throws(() => loadConfig({ TWIN_SEQUENCES: "0" }), /TWIN_SEQUENCES/);
    assert.equal(inference.flashAttention, true, "flash attention is on by default");
    assert.equal(loadConfig({ TWIN_FLASH_ATTENTION: "off" }).inference.flashAttention, false, "off");
    assert.throws(() => loadConfig({ TWIN_FLASH_ATTENTION: "yes" }), /TWIN_FLASH_ATTENTION/);
  });

  it("reads TWIN_GPU: auto by default, a backend or off, anything else refused by name", () => {
    assert.equal(loadConfig({}).inference.gpu, "auto");
    for (const value of ["cuda", "vulkan", "metal", "off"] as const)
      assert.equal(loadConfig({ TWIN_GPU: value }).inference.gpu, value);
    assert.throws(
      () => loadConfig({ TWIN_GPU: "rocm" }),
      (error) =>
        error instanceof ConfigError &&
        error.variable === "TWIN_GPU" &&
        error.message === "Configuration error in TWIN_GPU: must be one of auto, cuda, vulkan, metal, off",
    );
  });

  it("reads the memory settings: unset by default (the dataset's then), bad values refused by name", () => {
    assert.deepEqual(loadConfig({}).memory, {
      enabled: undefined,
      windows: undefined,
      indexAfterImport: true,
    });
    assert.equal(loadConfig({ TWIN_MEMORY: "off" }).memory.enabled, false);
    assert.deepEqual(
      loadConfig({ TWIN_MEMORY: "on", TWIN_MEMORY_WINDOWS: "5", TWIN_MEMORY_INDEX: "off" }).memory,
      { enabled: true, windows: 5, indexAfterImport: false },
    );
    assert.equal(loadConfig({ TWIN_MEMORY_WINDOWS: "0" }).memory.windows, 0, "0: none recalled");
    assert.throws(
      () => loadConfig({ TWIN_MEMORY: "yes" }),
      (error) =>
        error instanceof ConfigError &&
        error.variable === "TWIN_MEMORY" &&
        error.message === "Configuration error in TWIN_MEMORY: must be on or off",
    );
    for (const windows of ["11", "-1", "2.5", "many"])
      assert.throws(
        () => loadConfig({ TWIN_MEMORY_WINDOWS: windows }),
        (error) => error instanceof ConfigError && error.variable === "TWIN_MEMORY_WINDOWS",
        windows,
      );
  });

  it("reads the training settings, overrides as key=value pairs", () => {
    const config = loadConfig({
      TWIN_WORKER: "external",
      TWIN_TRAIN_CONFIG: "qwen2.5-7b-lora-1x24gb.yaml",
      TWIN_TRAIN_SET: "max_steps=200, learning_rate=1e-4",
    });
    assert.equal(config.training.worker, "external");
    assert.equal(config.training.configFile, "qwen2.5-7b-lora-1x24gb.yaml");
    assert.deepEqual(config.training.overrides, { max_steps: "200", learning_rate: "1e-4" });
    assert.equal(loadConfig({}).training.worker, "auto", "auto by default");
    assert.throws(() => loadConfig({ TWIN_TRAIN_CONFIG: "../secrets.yaml" }), /TWIN_TRAIN_CONFIG/);
    assert.throws(() => loadConfig({ TWIN_TRAIN_SET: "max_steps" }), /TWIN_TRAIN_SET/);
  });

  it("documents every variable in .env.example", () => {
    const example = fs.readFileSync(
      path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../.env.example"),
      "utf8",
    );
    const missing = knownVariables.filter((name) => !new RegExp(`^# ${name}=`, "m").test(example));
    assert.deepEqual(missing, [], "every variable has a commented example line");
  });

  it("treats empty values as unset", () => {
    assert.equal(loadConfig({ DATABASE_URL: "" }).databaseUrl, undefined);
  });

  it("rejects an unknown TWIN_ variable by name", () => {
    assert.throws(
      () => loadConfig({ TWIN_DATADIR: "/tmp" }),
      (error) => error instanceof ConfigError && error.variable === "TWIN_DATADIR",
    );
  });

  it("rejects a malformed value and names the variable, not the value", () => {
    assert.throws(
      () => loadConfig({ TWIN_TZ: "Mars/Olympus" }),
      (error) => error instanceof ConfigError && error.variable === "TWIN_TZ" && /IANA/.test(error.message),
    );
    assert.throws(
      () => loadConfig({ DATABASE_URL: "mysql://root:hunter2@h/db" }),
      (error) =>
        error instanceof ConfigError &&
        error.variable === "DATABASE_URL" &&
        !error.message.includes("hunter2"),
    );
    assert.throws(() => loadConfig({ TWIN_IMPORT_BATCH: "lots" }), /TWIN_IMPORT_BATCH/);
  });

  it("refuses a webhook secret shorter than 32 characters, naming the variable and not the value", () => {
    for (const secret of ["Qj", "a-long-random-string", "0123456789abcdef0123456789abcde"]) {
      assert.throws(
        () => loadConfig({ TWIN_WEBHOOK_URL: "https://twin.example.org/hook", TWIN_WEBHOOK_SECRET: secret }),
        (error) =>
          error instanceof ConfigError &&
          error.variable === "TWIN_WEBHOOK_SECRET" &&
          /32/.test(error.message) &&
          !error.message.includes(secret),
      );
    }
    const secret = "0123456789abcdef0123456789abcdef";
    assert.equal(
      loadConfig({ TWIN_WEBHOOK_URL: "https://t.example/h", TWIN_WEBHOOK_SECRET: secret }).bot.webhook
        ?.secret,
      secret,
    );
  });

  it("hands a child process what it needs to run, and none of the secrets", () => {
    const env = {
      PATH: "/usr/bin",
      HOME: "/home/u",
      LANG: "C.UTF-8",
      XDG_CACHE_HOME: "/c",
      CUDA_VISIBLE_DEVICES: "0",
      HF_TOKEN: "hf_x",
      HF_ENDPOINT: "http://mirror",
      PYTORCH_CUDA_ALLOC_CONF: "expandable_segments:True",
      https_proxy: "http://proxy:3128",
      NO_PROXY: "localhost",
      DATABASE_URL: "postgres://u:p@h/db",
      TWIN_MODEL_STORE: "/models",
      TWIN_BOT_TOKEN: "123456789:AAE-secret",
      TWIN_SESSION_KEY: "k".repeat(64),
      TWIN_API_ID: "1234567",
      TWIN_API_HASH: "0".repeat(32),
      TWIN_WEBHOOK_SECRET: "w".repeat(40),
      AWS_SECRET_ACCESS_KEY: "not ours to pass on",
      UNSET: undefined,
    };
    const child = childEnvironment(env);
    for (const name of secretVariables) assert.equal(child[name], undefined, `${name} stays behind`);
    assert.equal(child.AWS_SECRET_ACCESS_KEY, undefined, "what the trainer does not need stays behind");
    assert.ok(!("UNSET" in child));
    for (const name of [
      "PATH",
      "HOME",
      "LANG",
      "XDG_CACHE_HOME",
      "CUDA_VISIBLE_DEVICES",
      "HF_TOKEN",
      "HF_ENDPOINT",
      "PYTORCH_CUDA_ALLOC_CONF",
      "https_proxy",
      "NO_PROXY",
      "DATABASE_URL",
      "TWIN_MODEL_STORE",
    ] as const)
      assert.equal(child[name], env[name], `${name} is kept`);
  });

  it("lists as secret every variable whose description says it is one", () => {
    const described = Object.entries(variableDescriptions)
      .filter(([, description]) => /a secret/.test(description))
      .map(([name]) => name)
      .sort();
    assert.ok(described.length >= 4, `the secrets are described as such: ${described.join(", ")}`);
    for (const name of described)
      assert.ok((secretVariables as readonly string[]).includes(name), `${name} is listed as secret`);
  });
});
