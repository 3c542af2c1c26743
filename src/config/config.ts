import path from "node:path";
import { z } from "zod";
import { ConfigError } from "./config.errors.ts";

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
});

export type Config = {
  databaseUrl: string | undefined;
  dataDir: string;
  /** Set only when the user chose one (TWIN_TZ or --tz); see `machineTimeZone` for the fallback. */
  timeZone: string | undefined;
  embeddedPgPort: number;
  importBatchSize: number;
};

/** Variables documented in .env.example; other TWIN_ names are typos and fail the start. */
export const knownVariables = Object.keys(configSchema.shape);

export function machineTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
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
  };
}
