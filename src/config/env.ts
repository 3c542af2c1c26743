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
