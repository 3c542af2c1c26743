import { config as loadDotenv } from "dotenv";
import { type Config, childEnvironment, loadConfig } from "./config.ts";

/** The one reader of process.env: `.env` in the working directory first, real variables win. */
export function configFromEnvironment(): Config {
  loadDotenv({ quiet: true });
  return loadConfig(process.env);
}

/**
 * The environment a child process of twin starts with: this one's, less every secret (see
 * `childEnvironment`), and this process's id, by which the trainer dies with it (its parent-death
 * signal), even when twin is killed with SIGKILL.
 */
export function environmentForChild(extra: Record<string, string> = {}): Record<string, string> {
  return { ...childEnvironment(process.env), TWIN_PARENT_PID: String(process.pid), ...extra };
}

/**
 * The environment `ssh` starts with: what OpenSSH needs to find the user's keys, agent and config,
 * and nothing else, so no variable of twin's (a database URL, a token) can be sent to a remote by a
 * `SendEnv` in the user's ssh config.
 */
export function environmentForSsh(): Record<string, string> {
  const kept =
    /^(PATH|HOME|USER|LOGNAME|LANG|LC_\w+|TERM|SSH_AUTH_SOCK|SSH_AGENT_PID|XDG_RUNTIME_DIR|DISPLAY|SSH_ASKPASS)$/;
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[1] !== undefined && kept.test(entry[0]),
    ),
  );
}

/**
 * The Hugging Face hub as huggingface_hub and llama.cpp find it: HF_ENDPOINT (a mirror; default
 * https://huggingface.co) and HF_TOKEN (for gated repositories; a secret: never logged).
 */
export function huggingFaceFromEnvironment(): { endpoint: string | undefined; token: string | undefined } {
  loadDotenv({ quiet: true });
  return {
    endpoint: process.env.HF_ENDPOINT?.trim() || undefined,
    token: process.env.HF_TOKEN?.trim() || undefined,
  };
}
