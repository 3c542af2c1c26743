import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import readline from "node:readline";
import { environmentForChild } from "../config/env.ts";
import { fileHead, type Hub, type HubFile, repoListing } from "./hub.ts";
import { HubNotFoundError, PairMismatchError, PullInterruptedError, WeightsError } from "./models.errors.ts";

/**
 * A base's HF weights, the ones the trainer loads, beside the GGUF that is served: which files a
 * pull fetches (asked of the hub here, so a missing or gated repository refuses before anything
 * downloads), and the two things the trainer's Python does because huggingface_hub and gguf-py live
 * there: `python -m twin_trainer fetch-weights` (resumable, HF_ENDPOINT and HF_TOKEN) and
 * `check-pair` (architecture, layers, every tensor's shape, vocabulary and special tokens, and
 * dequantized values within the quantization's tolerance: trainer/twin_trainer/pair.py).
 */

/** A hub repository's id, `org/repo` (pure). */
export function isHubRepo(source: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(source);
}

/**
 * The files of a weights repository training reads (its top folder's safetensors, config and
 * tokenizer files), as the trainer's fetch-weights selects them (pure).
 */
export function weightFiles(files: HubFile[]): HubFile[] {
  return files.filter(
    (file) => !file.path.includes("/") && /\.(safetensors|json|txt|model|jinja|tiktoken)$/.test(file.path),
  );
}

/**
 * What a weights repository holds at its main branch, pinned to the commit the listing names; a
 * repository without safetensors weights and a config is refused, and a gated one refuses here.
 */
export async function weightsListing(
  hub: Hub,
  repo: string,
  signal?: AbortSignal,
): Promise<{ repo: string; commit: string; files: HubFile[] }> {
  const listing = await repoListing(hub, repo, "main", signal);
  const files = weightFiles(listing.files);
  const names = files.map((file) => file.path);
  if (!names.some((name) => name.endsWith(".safetensors")) || !names.includes("config.json")) {
    throw new HubNotFoundError(
      `${repo} on ${hub.endpoint} has no safetensors weights with a config.json in its top folder: twin trains from safetensors (the same model's HF repository, e.g. the one its GGUF was converted from)`,
    );
  }
  await fileHead(hub, repo, listing.commit, "config.json", signal);
  return { repo, commit: listing.commit, files };
}

/** Bytes of `files` already whole in `folder` (fetched before, or by a pull that stopped). */
export async function weightBytesThere(folder: string, files: HubFile[]): Promise<number> {
  const sizes = await Promise.all(
    files.map(async (file) => {
      const stat = await fs.stat(path.join(folder, file.path)).catch(() => undefined);
      return stat?.isFile() && stat.size === file.size ? file.size : 0;
    }),
  );
  return sizes.reduce((sum, size) => sum + size, 0);
}

export type FetchedWeights = { repo: string; folder: string; files: string[]; bytes: number };
export type PairReport = {
  ok: true;
  architecture: string;
  layers: number;
  tensors: number;
  vocabulary: number;
  compared: number;
  worst: { tensor?: string; type?: string; error?: number; tolerance?: number };
  /** The checked weights' fingerprint, recorded so a worker without the GGUF can check its fetch. */
  weights_fingerprint: string;
};

/** The trainer's weights commands, as a pull uses them (a test may stand in for them). */
export type WeightsTool = {
  fetch(input: {
    hub: Hub;
    repo: string;
    revision: string;
    dest: string;
    signal?: AbortSignal | undefined;
    onLine?: ((line: string) => void) | undefined;
  }): Promise<FetchedWeights>;
  check(input: { gguf: string; weights: string; signal?: AbortSignal | undefined }): Promise<PairReport>;
};

/**
 * The weights commands of the trainer at `cwd`, run with its Python (`python()` is asked only when
 * a pull has weights to fetch, so pulling a GGUF alone needs no trainer environment).
 */
export function trainerWeightsTool(options: { python: () => string; cwd: string }): WeightsTool {
  return {
    async fetch({ hub, repo, revision, dest, signal, onLine }) {
      const env: Record<string, string> = { HF_ENDPOINT: hub.endpoint };
      if (hub.token) env.HF_TOKEN = hub.token;
      const run = await runTrainer(options, ["fetch-weights", repo, "--revision", revision, "--dest", dest], {
        env,
        dropToken: !hub.token,
        signal,
        onLine,
      });
      if (run.aborted) {
        throw new PullInterruptedError(
          `interrupted while fetching the weights of ${repo}; what arrived is kept in ${dest} — run the same command again to resume`,
        );
      }
      if (run.code !== 0) {
        throw new WeightsError(
          `fetching the weights ${repo} failed (exit ${run.code}): ${lastErrorLine(run.stderr)}`,
        );
      }
      return lastJsonLine(run.stdout) as FetchedWeights;
    },
    async check({ gguf, weights, signal }) {
      const run = await runTrainer(options, ["check-pair", gguf, weights], { env: {}, signal });
      if (run.aborted)
        throw new PullInterruptedError("interrupted while checking the weights against the GGUF");
      const answer = lastJsonLine(run.stdout) as { ok?: boolean; mismatch?: string };
      if (run.code === 0 && answer.ok === true) return answer as PairReport;
      if (run.code === 1 && answer.ok === false) {
        throw new PairMismatchError(
          `${gguf} and the weights in ${weights} are not the same model: ${answer.mismatch}`,
        );
      }
      throw new WeightsError(
        `checking ${weights} against ${gguf} failed (exit ${run.code}): ${lastErrorLine(run.stderr)}`,
      );
    },
  };
}

/** The JSON object a trainer command prints last on stdout; {} when it printed none. */
function lastJsonLine(stdout: string): Record<string, unknown> {
  try {
    return JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function runTrainer(
  options: { python: () => string; cwd: string },
  args: string[],
  run: {
    env: Record<string, string>;
    dropToken?: boolean;
    signal?: AbortSignal | undefined;
    onLine?: ((line: string) => void) | undefined;
  },
): Promise<{ code: number | null; stdout: string; stderr: string; aborted: boolean }> {
  const env = environmentForChild(run.env);
  if (run.dropToken) delete env.HF_TOKEN; // the hub this pull uses has no token: neither has the fetch
  const child = spawn(options.python(), ["-m", "twin_trainer", ...args], {
    cwd: options.cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  readline.createInterface({ input: child.stderr }).on("line", (line) => {
    stderr = `${stderr}${line}\n`.slice(-8000);
    if (!line.startsWith("error: ")) run.onLine?.(line);
  });
  const stop = () => child.kill("SIGTERM");
  run.signal?.addEventListener("abort", stop, { once: true });
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (exitCode) => resolve(exitCode));
    });
    return { code, stdout, stderr, aborted: run.signal?.aborted ?? false };
  } finally {
    run.signal?.removeEventListener("abort", stop);
  }
}

/** The trainer's last stderr line, less its `error: ` prefix: what it says went wrong. */
function lastErrorLine(stderr: string): string {
  return (
    stderr
      .trim()
      .split("\n")
      .at(-1)
      ?.replace(/^error: /, "") ?? ""
  );
}
