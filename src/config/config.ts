import path from "node:path";
import { z } from "zod";
import { ConfigError } from "./config.errors.ts";

/** TWIN_GPU: node-llama-cpp's GPU backends, "auto" (its pick), or "off" (the CPU only). */
export const GPU_SETTINGS = ["auto", "cuda", "vulkan", "metal", "off"] as const;
export type GpuSetting = (typeof GPU_SETTINGS)[number];

/**
 * Every environment variable twin reads, with its default and meaning.
 * This module is the only place that looks at `process.env`; everything else receives a `Config`.
 */
const configSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
    .optional()
    .describe("PostgreSQL to use; without it an embedded server runs in TWIN_DATA_DIR/postgres"),
  TWIN_DATA_DIR: z.string().min(1).default("./data").describe("where the embedded database and caches live"),
  TWIN_TZ: z
    .string()
    .refine(isTimeZone, "must be an IANA time zone such as Europe/Berlin")
    .optional()
    .describe(
      "the owner's time zone (old exports carry only local times); default: the one stored at the last import, else this machine's",
    ),
  TWIN_EMBEDDED_PG_PORT: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(0)
    .describe("port for the embedded PostgreSQL; 0 picks a free one"),
  TWIN_IMPORT_BATCH: z.coerce
    .number()
    .int()
    .min(100)
    .max(1_000_000)
    .default(25_000)
    .describe("messages per import transaction"),
  TWIN_MODEL: z
    .string()
    .min(1)
    .optional()
    .describe("the base GGUF to serve; default: the default model registered with `twin model add`"),
  TWIN_ADAPTER: z
    .string()
    .min(1)
    .optional()
    .describe("a LoRA adapter GGUF (from the trainer) to serve on the base"),
  TWIN_ADAPTER_SCALE: z.coerce.number().min(0).max(4).default(1).describe("how strongly the adapter applies"),
  TWIN_CONTEXT_SIZE: z.coerce
    .number()
    .int()
    .min(256)
    .max(131_072)
    .default(4096)
    .describe("tokens per conversation"),
  TWIN_SEQUENCES: z.coerce
    .number()
    .int()
    .min(1)
    .max(64)
    .default(8)
    .describe("conversations answered at once (sequences per context)"),
  TWIN_THREADS: z.coerce
    .number()
    .int()
    .min(0)
    .max(512)
    .default(0)
    .describe("CPU threads for the model; 0 chooses from the machine (see bench/inference)"),
  TWIN_GPU: z
    .enum(GPU_SETTINGS, { message: `must be one of ${GPU_SETTINGS.join(", ")}` })
    .default("auto")
    .describe(
      "where the served model runs: auto (the best GPU node-llama-cpp finds, else the CPU), cuda, vulkan, metal, or off (the CPU only)",
    ),
  TWIN_FLASH_ATTENTION: z
    .enum(["on", "off"])
    .default("on")
    .describe("flash attention in the model's contexts (on: faster prompts; see bench/inference)"),
  TWIN_TEMPERATURE: z.coerce.number().min(0).max(2).default(0.8).describe("sampling temperature (0: greedy)"),
  TWIN_TOP_K: z.coerce
    .number()
    .int()
    .min(0)
    .max(1000)
    .default(40)
    .describe("sample among the k likeliest tokens"),
  TWIN_TOP_P: z.coerce.number().min(0).max(1).default(0.95).describe("nucleus sampling mass"),
  TWIN_MIN_P: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.05)
    .describe("drop tokens below this share of the likeliest"),
  TWIN_REPEAT_PENALTY: z.coerce
    .number()
    .min(1)
    .max(2)
    .default(1.1)
    .describe("penalty for repeating recent tokens"),
  TWIN_MAX_REPLY_TOKENS: z.coerce
    .number()
    .int()
    .min(8)
    .max(4096)
    .default(256)
    .describe(
      "cap on a reply, in tokens (below it: the imitated person's 95th-percentile turn, at least 48)",
    ),
  TWIN_MEMORY: z
    .enum(["on", "off"], { message: "must be on or off" })
    .optional()
    .describe(
      "memory: past exchanges recalled from the whole history into the prompt, as an untrained system turn (default: as the model's dataset was built, `twin dataset --memory`)",
    ),
  TWIN_MEMORY_INDEX: z
    .enum(["on", "off"], { message: "must be on or off" })
    .default("on")
    .describe(
      "off: an import starts no background run of the memory index (the bot or `twin memory index` fills it)",
    ),
  TWIN_MEMORY_WINDOWS: z.coerce
    .number()
    .int()
    .min(0)
    .max(10)
    .optional()
    .describe(
      "at most this many recalled exchanges per prompt when memory is on (0: none; default: the dataset's, else 3)",
    ),
  TWIN_BOT_TOKEN: z
    .string()
    .superRefine((token, context) => {
      const problem = botTokenProblem(token);
      if (problem) context.addIssue({ code: "custom", message: problem });
    })
    .optional()
    .describe("the bot's token (a secret: never logged)"),
  TWIN_OWNER_ID: z.coerce
    .number()
    .int()
    .positive()
    .optional()
    .describe("the owner's Telegram user id: the one account that runs the bot's owner commands"),
  TWIN_BOT_API_ROOT: z
    .string()
    .url()
    .default("https://api.telegram.org")
    .describe("the Bot API server (a local telegram-bot-api server, or the tests' one)"),
  TWIN_BOT_CONNECT_S: z.coerce
    .number()
    .int()
    .min(1)
    .max(3600)
    .default(120)
    .describe(
      "how long `twin bot` keeps trying to reach the Bot API at start before it gives up, in seconds",
    ),
  TWIN_WEBHOOK_URL: z
    .string()
    .url()
    .optional()
    .describe("public HTTPS address for webhook mode; unset: long polling"),
  TWIN_WEBHOOK_PORT: z.coerce
    .number()
    .int()
    .min(1)
    .max(65535)
    .default(8080)
    .describe("port the webhook listens on"),
  TWIN_WEBHOOK_SECRET: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]{32,256}$/,
      "must be 32-256 characters of A-Z, a-z, 0-9, _ and - (e.g. `openssl rand -hex 32`); a shorter one can be guessed",
    )
    .optional()
    .describe(
      "secret Telegram sends with each webhook call; unset: generated once and kept in the database (a secret: never logged)",
    ),
  TWIN_GROUPS: z
    .string()
    .regex(/^-\d+(,\s*-\d+)*$/, "must be a comma-separated list of group chat ids (negative numbers)")
    .optional()
    .describe("group chats where the twin may answer allowed friends; default: private chats only"),
  TWIN_RATE_LIMIT: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(12)
    .describe("messages per minute the twin answers for one person; more wait for later rounds"),
  TWIN_REPLY_QUIET_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(600_000)
    .default(4000)
    .describe("quiet time after a friend's last message before the twin answers the burst"),
  TWIN_TYPING_MS_PER_CHAR: z.coerce
    .number()
    .min(0)
    .max(1000)
    .default(40)
    .describe("typing pause before each message, per character"),
  TWIN_TYPING_MAX_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(60_000)
    .default(3000)
    .describe("the longest typing pause"),
  TWIN_API_ID: z.coerce
    .number()
    .int()
    .positive()
    .optional()
    .describe(
      "the userbot's api_id from my.telegram.org (for /export and twin export; a secret: never logged)",
    ),
  TWIN_API_HASH: z
    .string()
    .regex(/^[0-9a-f]{32}$/, "must be the 32 hex digits my.telegram.org shows as api_hash")
    .optional()
    .describe("the userbot's api_hash (a secret: never logged)"),
  TWIN_SESSION_KEY: z
    .string()
    .regex(
      /^([0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=)$/,
      "must be 32 random bytes as 64 hex digits or base64 (openssl rand -hex 32)",
    )
    .optional()
    .describe("the key that seals the userbot's session in the database (a secret: never logged)"),
  TWIN_PROGRESS_EDIT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(600_000)
    .default(3000)
    .describe("least time between edits of a progress message in Telegram"),
  TWIN_WORKER: z
    .enum(["auto", "local", "external"])
    .default("auto")
    .describe(
      "who trains queued runs: local (a child process from trainer/.venv), external (a worker elsewhere), auto (local unless an external worker is alive)",
    ),
  TWIN_TRAINER_PYTHON: z
    .string()
    .min(1)
    .optional()
    .describe("the Python of the trainer's environment; default: trainer/.venv/bin/python"),
  TWIN_TRAIN_CONFIG: z
    .string()
    .regex(
      /^[\w.-]+\.ya?ml$/,
      "must be the name of a file in trainer/configs, e.g. qwen2.5-7b-lora-1x24gb.yaml",
    )
    .optional()
    .describe(
      "the trainer config new LoRA runs use (a file in trainer/configs); default: the one written for the base's size and the worker's GPUs, else a refusal naming it",
    ),
  TWIN_TRAIN_CONFIG_FULL: z
    .string()
    .regex(
      /^[\w.-]+\.ya?ml$/,
      "must be the name of a file in trainer/configs, e.g. qwen2.5-7b-full-8x80gb.yaml",
    )
    .optional()
    .describe(
      "the trainer config of full fine-tuning, offered by /train when a worker has several GPUs; default: chosen as for TWIN_TRAIN_CONFIG",
    ),
  TWIN_TRAIN_SET: z
    .string()
    .regex(/^\s*[a-z_]+=[^,]+(\s*,\s*[a-z_]+=[^,]+)*\s*$/, "must be key=value pairs separated by commas")
    .optional()
    .describe("overrides of the trainer config for new runs, e.g. max_steps=200,learning_rate=1e-4"),
  TWIN_WORKER_STALE_S: z.coerce
    .number()
    .min(1)
    .max(3600)
    .default(60)
    .describe("a running run whose worker is silent this long is taken as dead and re-queued"),
  TWIN_MODEL_STORE: z
    .string()
    .min(1)
    .optional()
    .describe(
      "where fully fine-tuned models live (gigabytes each), shared by the bot and the workers; default: <TWIN_DATA_DIR>/models",
    ),
  TWIN_REMOTE_WORKERS: z
    .string()
    .regex(
      /^\s*ssh:\/\/[^\s,]+(\s*,\s*ssh:\/\/[^\s,]+)*\s*$/,
      "must be ssh:// addresses separated by commas, e.g. ssh://ubuntu@gpu-box,ssh://root@1.2.3.4:2222",
    )
    .optional()
    .describe(
      "machines /train offers to train on over SSH (twin worker remote), comma-separated ssh:// addresses",
    ),
  TWIN_SSH_CONFIG: z
    .string()
    .min(1)
    .optional()
    .describe(
      "an ssh config file for twin worker remote (passed as ssh -F); default: ssh's own (~/.ssh/config)",
    ),
  TWIN_REMOTE_PIP_OPTIONS: z
    .string()
    .optional()
    .describe(
      "pip options on a remote worker's machine: a mirror (--index-url URL) or wheels there (--no-index --find-links DIR); default: PyPI, and PyTorch's CPU index where there is no GPU",
    ),
});

export type Config = {
  databaseUrl: string | undefined;
  dataDir: string;
  /** Set only when the user chose one (TWIN_TZ or --tz); see `machineTimeZone` for the fallback. */
  timeZone: string | undefined;
  embeddedPgPort: number;
  importBatchSize: number;
  inference: InferenceConfig;
  memory: MemoryConfig;
  bot: BotConfig;
  userbot: { apiId: number | undefined; apiHash: string | undefined; sessionKey: string | undefined };
  training: TrainingConfig;
};

export type TrainingConfig = {
  worker: "auto" | "local" | "external";
  python: string | undefined;
  /** Set: every LoRA run uses it. Unset: training/config-choice.ts picks one for the base and the worker. */
  configFile: string | undefined;
  /** The config of full fine-tuning (method: full), offered when a worker has several GPUs; unset as above. */
  fullConfigFile: string | undefined;
  overrides: Record<string, string>;
  staleSeconds: number;
  /** Fully fine-tuned models (and their checkpoints) by run: a folder the bot and every worker see. */
  modelStore: string;
  /** Machines reached over SSH (`twin worker remote`). */
  remote: {
    /** TWIN_REMOTE_WORKERS: the ssh:// addresses /train offers. */
    workers: string[];
    sshConfig: string | undefined;
    pipOptions: string;
  };
};

export type BotConfig = {
  token: string | undefined;
  ownerId: number | undefined;
  apiRoot: string;
  /** How long the start-up keeps trying to reach the Bot API (TWIN_BOT_CONNECT_S); absent: 120 s. */
  connectSeconds?: number | undefined;
  webhook: { url: string; port: number; secret: string | undefined } | undefined;
  groups: number[];
  rateLimitPerMinute: number;
  quietMs: number;
  typing: { msPerChar: number; maxMs: number };
  progressEditMs: number;
};

/** Recall of past exchanges into prompts (src/history/memory/, src/inference/conversation-context.ts). */
export type MemoryConfig = {
  /** TWIN_MEMORY; undefined: as the model's dataset was built (its manifest), else off. */
  enabled: boolean | undefined;
  /** TWIN_MEMORY_WINDOWS: the most recalled windows a prompt shows; undefined: the dataset's, else 3. */
  windows: number | undefined;
  /** TWIN_MEMORY_INDEX: whether an import starts indexing in the background. */
  indexAfterImport: boolean;
};

export type InferenceConfig = {
  model: string | undefined;
  adapter: string | undefined;
  adapterScale: number;
  contextSize: number;
  sequences: number;
  /** 0: choose from the machine. */
  threads: number;
  /** Used where the model supports it (measured on 2 cores: prompts ~1.25x faster). */
  flashAttention: boolean;
  /** TWIN_GPU: the GPU backend getLlama is asked for ("off": the CPU only). */
  gpu: GpuSetting;
  sampling: { temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number };
  maxReplyTokens: number;
};

/** Variables documented in .env.example; other TWIN_ names are typos and fail the start. */
export const knownVariables = Object.keys(configSchema.shape);

/** What each variable means (its `describe` above), for help texts and checks. */
export const variableDescriptions: Record<string, string> = Object.fromEntries(
  Object.entries(configSchema.shape).map(([name, schema]) => [name, schema.description ?? ""]),
);

/** The variables that are credentials: never logged, never handed to a child process. */
export const secretVariables = [
  "TWIN_BOT_TOKEN",
  "TWIN_WEBHOOK_SECRET",
  "TWIN_API_ID",
  "TWIN_API_HASH",
  "TWIN_SESSION_KEY",
] as const;

/**
 * What a child process (the trainer's worker, the report) may see of the environment: what
 * Python, PyTorch, CUDA, Hugging Face and the network need, the database URL and twin's own
 * non-secret settings. Everything else, the secrets above first, stays behind (pure).
 */
export function childEnvironment(env: Record<string, string | undefined>): Record<string, string> {
  const denied = new Set<string>(secretVariables);
  const kept = Object.entries(env).filter(
    (entry): entry is [string, string] =>
      entry[1] !== undefined && !denied.has(entry[0]) && CHILD_VARIABLES.test(entry[0]),
  );
  return Object.fromEntries(kept);
}

const CHILD_VARIABLES = new RegExp(
  `^(${[
    "PATH|HOME|USER|LOGNAME|SHELL|TMPDIR|TMP|TEMP|TZ|LANG|LANGUAGE|LC_\\w+|TERM|COLUMNS|NO_COLOR|FORCE_COLOR|DEBUG",
    "XDG_\\w+|LD_LIBRARY_PATH|VIRTUAL_ENV|CONDA_\\w+|PYTHON\\w*",
    "CUDA_\\w+|NVIDIA_\\w+|NCCL_\\w+|HIP_\\w+|ROCR_\\w+|HSA_\\w+|OMP_\\w+|MKL_\\w+|OPENBLAS_\\w+",
    "PYTORCH_\\w+|TORCH_\\w+|TORCHINDUCTOR_\\w+|HF_\\w+|HUGGING_FACE_\\w+|TRANSFORMERS_\\w+|TOKENIZERS_\\w+",
    "(HTTP|HTTPS|NO|ALL)_PROXY|(http|https|no|all)_proxy|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE",
    "DATABASE_URL|PG\\w+|TWIN_\\w+",
  ].join("|")})$`,
);

/** The length of a bot token's secret part, after `<bot id>:`. */
export const BOT_TOKEN_SECRET_LENGTH = 35;

/**
 * What is wrong with a bot token's shape (`<bot id>:<secret of 35 characters>`, as @BotFather gives
 * it), or undefined when it looks right. It says where the token is wrong, never what it holds.
 */
export function botTokenProblem(token: string): string | undefined {
  const shape = `must be the token @BotFather gives, <bot id>:<secret of ${BOT_TOKEN_SECRET_LENGTH} characters> (e.g. 123456789:AAE…)`;
  if (token !== token.trim()) return `${shape}; this one has spaces or line breaks around it`;
  const colon = token.indexOf(":");
  if (colon < 0) return `${shape}; this one has no colon`;
  const id = token.slice(0, colon);
  const secret = token.slice(colon + 1);
  if (!/^\d+$/.test(id))
    return `${shape}; the bot id before the colon ${id ? "is not all digits" : "is missing"}`;
  if (!/^[A-Za-z0-9_-]*$/.test(secret))
    return `${shape}; the secret after the colon holds characters other than A-Z, a-z, 0-9, _ and -`;
  if (secret.length !== BOT_TOKEN_SECRET_LENGTH)
    return `${shape}; the secret after the colon has ${secret.length} characters instead of ${BOT_TOKEN_SECRET_LENGTH}`;
  return undefined;
}

export function machineTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** The owner's time zone, one rule everywhere: TWIN_TZ or --tz, else the one stored with the owner, else this machine's. */
export function ownerTimeZone(configured: string | undefined, stored: string | null | undefined): string {
  return configured ?? stored ?? machineTimeZone();
}

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Builds the validated config from an environment (pure: pass `process.env` at the edge). */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const unknown = Object.keys(env).filter(
    (name) => name.startsWith("TWIN_") && !knownVariables.includes(name),
  );
  if (unknown.length > 0) {
    throw new ConfigError(
      unknown[0] as string,
      `unknown variable (known: ${knownVariables.filter((n) => n.startsWith("TWIN_")).join(", ")})`,
    );
  }
  // Empty strings mean "unset", as in most .env files.
  const present = Object.fromEntries(
    knownVariables.map((name) => [name, env[name] === "" ? undefined : env[name]]),
  );
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue?.path[0] ?? "environment");
    throw new ConfigError(variable, issue?.message ?? "invalid value");
  }
  const values = parsed.data;
  return {
    databaseUrl: values.DATABASE_URL,
    dataDir: path.resolve(values.TWIN_DATA_DIR),
    timeZone: values.TWIN_TZ,
    embeddedPgPort: values.TWIN_EMBEDDED_PG_PORT,
    importBatchSize: values.TWIN_IMPORT_BATCH,
    inference: {
      model: values.TWIN_MODEL,
      adapter: values.TWIN_ADAPTER,
      adapterScale: values.TWIN_ADAPTER_SCALE,
      contextSize: values.TWIN_CONTEXT_SIZE,
      sequences: values.TWIN_SEQUENCES,
      threads: values.TWIN_THREADS,
      flashAttention: values.TWIN_FLASH_ATTENTION === "on",
      gpu: values.TWIN_GPU,
      sampling: {
        temperature: values.TWIN_TEMPERATURE,
        topK: values.TWIN_TOP_K,
        topP: values.TWIN_TOP_P,
        minP: values.TWIN_MIN_P,
        repeatPenalty: values.TWIN_REPEAT_PENALTY,
      },
      maxReplyTokens: values.TWIN_MAX_REPLY_TOKENS,
    },
    memory: {
      enabled: values.TWIN_MEMORY === undefined ? undefined : values.TWIN_MEMORY === "on",
      windows: values.TWIN_MEMORY_WINDOWS,
      indexAfterImport: values.TWIN_MEMORY_INDEX === "on",
    },
    bot: {
      token: values.TWIN_BOT_TOKEN,
      ownerId: values.TWIN_OWNER_ID,
      apiRoot: values.TWIN_BOT_API_ROOT.replace(/\/+$/, ""),
      connectSeconds: values.TWIN_BOT_CONNECT_S,
      webhook: values.TWIN_WEBHOOK_URL
        ? { url: values.TWIN_WEBHOOK_URL, port: values.TWIN_WEBHOOK_PORT, secret: values.TWIN_WEBHOOK_SECRET }
        : undefined,
      groups: values.TWIN_GROUPS ? values.TWIN_GROUPS.split(",").map((id) => Number(id.trim())) : [],
      rateLimitPerMinute: values.TWIN_RATE_LIMIT,
      quietMs: values.TWIN_REPLY_QUIET_MS,
      typing: { msPerChar: values.TWIN_TYPING_MS_PER_CHAR, maxMs: values.TWIN_TYPING_MAX_MS },
      progressEditMs: values.TWIN_PROGRESS_EDIT_MS,
    },
    userbot: {
      apiId: values.TWIN_API_ID,
      apiHash: values.TWIN_API_HASH,
      sessionKey: values.TWIN_SESSION_KEY,
    },
    training: {
      worker: values.TWIN_WORKER,
      python: values.TWIN_TRAINER_PYTHON,
      configFile: values.TWIN_TRAIN_CONFIG,
      fullConfigFile: values.TWIN_TRAIN_CONFIG_FULL,
      overrides: Object.fromEntries(
        (values.TWIN_TRAIN_SET ?? "")
          .split(",")
          .filter((pair) => pair.trim())
          .map((pair) => pair.split("=").map((part) => part.trim()) as [string, string]),
      ),
      staleSeconds: values.TWIN_WORKER_STALE_S,
      modelStore: path.resolve(values.TWIN_MODEL_STORE ?? path.join(values.TWIN_DATA_DIR, "models")),
      remote: {
        workers: (values.TWIN_REMOTE_WORKERS ?? "")
          .split(",")
          .map((address) => address.trim())
          .filter(Boolean),
        sshConfig: values.TWIN_SSH_CONFIG,
        pipOptions: values.TWIN_REMOTE_PIP_OPTIONS?.trim() ?? "",
      },
    },
  };
}
