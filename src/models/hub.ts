import { z } from "zod";
import { HubAccessError, HubNotFoundError, HubUnreachableError, ModelSourceError } from "./models.errors.ts";

/**
 * The few Hugging Face hub requests a pull needs before it downloads: which files a revision holds
 * (with their sizes and sha256), whether this user may fetch them, and which file a quantization
 * tag names. Every answer the hub can give becomes a domain error that says what to do; the token
 * is sent, never shown.
 */

export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

export type Hub = {
  /** The hub, or a mirror of it (HF_ENDPOINT), without a trailing slash. */
  endpoint: string;
  /** HF_TOKEN: a bearer token for gated and private repositories. */
  token: string | undefined;
  /** How long one metadata request may take; default 30 s. */
  timeoutMs?: number;
};

export type HubFile = {
  /** The path inside the repository, e.g. `qwen2.5-0.5b-instruct-q4_k_m.gguf`. */
  path: string;
  size: number;
  /** The LFS object id, which is the sha256 of the content; undefined for a file kept in git. */
  sha256: string | undefined;
};

export type RepoListing = { repo: string; commit: string; files: HubFile[] };

/** HF_ENDPOINT as a hub address: http(s), no trailing slash; unset: huggingface.co (pure). */
export function hubEndpoint(configured: string | undefined): string {
  const endpoint = (configured ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(endpoint)) {
    throw new ModelSourceError(
      `HF_ENDPOINT=${endpoint}: expected an http(s) address such as ${DEFAULT_HUB_ENDPOINT}`,
    );
  }
  return endpoint;
}

/** Where a person reads a repository's card and accepts its licence (pure). */
export function modelPage(hub: Pick<Hub, "endpoint">, repo: string): string {
  return `${hub.endpoint}/${repo}`;
}

const LOCAL_FILE_HINT = "or download the .gguf another way and register it with `twin model add <file.gguf>`";

const listing = z.object({
  sha: z.string().min(1),
  siblings: z.array(
    z.object({
      rfilename: z.string(),
      size: z.number().optional(),
      lfs: z.object({ sha256: z.string(), size: z.number() }).optional(),
    }),
  ),
});

/** The files of `repo` at `revision` (a branch or a commit), with the commit it resolved to. */
export async function repoListing(
  hub: Hub,
  repo: string,
  revision: string,
  signal?: AbortSignal,
): Promise<RepoListing> {
  const url = `${hub.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const response = await hubRequest(hub, url, { repo, what: `the file list of ${repo}` }, { signal });
  const parsed = listing.safeParse(await response.json().catch(() => undefined));
  if (!parsed.success) {
    throw new HubUnreachableError(
      `${hub.endpoint} answered ${url} with something other than the hub's file list: is HF_ENDPOINT a Hugging Face mirror? ${LOCAL_FILE_HINT}`,
    );
  }
  return {
    repo,
    commit: parsed.data.sha,
    files: parsed.data.siblings.map((file) => ({
      path: file.rfilename,
      size: file.lfs?.size ?? file.size ?? 0,
      sha256: file.lfs?.sha256,
    })),
  };
}

/**
 * What the hub will serve for one file (HEAD on its resolve address, not followed): an LFS file
 * answers with a redirect to its storage and `X-Linked-Size`/`X-Linked-Etag` (the sha256). This is
 * also where a gated repository says 401 or 403, before a byte is downloaded.
 */
export async function fileHead(
  hub: Hub,
  repo: string,
  revision: string,
  file: string,
  signal?: AbortSignal,
): Promise<{ size: number | undefined; sha256: string | undefined; commit: string | undefined }> {
  const response = await hubRequest(
    hub,
    resolveUrl(hub, repo, revision, file),
    { repo, what: `${repo}/${file}` },
    { method: "HEAD", redirect: "manual", signal },
  );
  const size = Number(response.headers.get("x-linked-size") ?? Number.NaN);
  const etag = (response.headers.get("x-linked-etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
  return {
    size: Number.isSafeInteger(size) ? size : undefined,
    sha256: /^[0-9a-f]{64}$/.test(etag) ? etag : undefined,
    commit: response.headers.get("x-repo-commit") ?? undefined,
  };
}

/**
 * The GGUF file a quantization tag names in `repo` (`hf:<org>/<repo>:Q4_K_M`), asked the way
 * llama.cpp and node-llama-cpp ask: the manifest endpoint, as the `llama-cpp` user agent.
 */
export async function quantFile(
  hub: Hub,
  repo: string,
  quant: string,
  signal?: AbortSignal,
): Promise<string> {
  const url = `${hub.endpoint}/v2/${repo}/manifests/${encodeURIComponent(quant)}`;
  const what = `the ${quant} GGUF of ${repo}`;
  const response = await hubRequest(
    hub,
    url,
    { repo, what, missing: `${repo} has no ${quant} GGUF on ${hub.endpoint}` },
    { headers: { "User-Agent": "llama-cpp", Accept: "application/json" }, signal },
  );
  const body = (await response.json().catch(() => undefined)) as
    | { ggufFile?: { rfilename?: unknown } }
    | undefined;
  const file = body?.ggufFile?.rfilename;
  if (typeof file !== "string" || !file.endsWith(".gguf")) {
    throw new HubNotFoundError(`${repo} has no ${quant} GGUF on ${hub.endpoint} (its manifest names none)`);
  }
  return file;
}

/** The address a file is downloaded from (pure). */
export function resolveUrl(hub: Pick<Hub, "endpoint">, repo: string, revision: string, file: string): string {
  const encoded = file.split("/").map(encodeURIComponent).join("/");
  return `${hub.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encoded}`;
}

/**
 * The error a hub answer means, or undefined for a success (pure). A 401 or 403 is a gated or
 * private repository, except where the hub says `RepoNotFound` (it answers 401 for a missing repo
 * to anyone not logged in); a 5xx or 429 is the hub's trouble, not the user's.
 */
export function hubAnswerError(
  hub: Pick<Hub, "endpoint" | "token">,
  answer: { status: number; statusText?: string; errorCode?: string | null },
  about: { repo: string; what: string; missing?: string },
): Error | undefined {
  const { status } = answer;
  if (status < 400) return undefined;
  const page = modelPage(hub, about.repo);
  if ((status === 401 || status === 403) && answer.errorCode !== "RepoNotFound") {
    const why = hub.token
      ? `the hub refused HF_TOKEN for ${about.repo} (${status})`
      : `${about.repo} is gated or private and HF_TOKEN is not set (${status})`;
    return new HubAccessError(
      `${why}: accept the licence at ${page}, then set HF_TOKEN to a read token of that account (${hub.endpoint}/settings/tokens)`,
    );
  }
  // The manifest endpoint answers 400 for a tag the repository lacks.
  if (status === 401 || status === 403 || status === 404 || (status === 400 && about.missing)) {
    if (about.missing) return new HubNotFoundError(about.missing);
    return new HubNotFoundError(
      answer.errorCode === "RepoNotFound"
        ? `${about.repo} is not on ${hub.endpoint}${hub.token ? "" : " (a private repository needs HF_TOKEN)"}`
        : `${about.what}: not found on ${hub.endpoint}`,
    );
  }
  return new HubUnreachableError(
    `the model hub at ${hub.endpoint} answered ${status}${answer.statusText ? ` ${answer.statusText}` : ""} for ${about.what}: try again later, ${LOCAL_FILE_HINT}`,
  );
}

/** What failed when nothing answered: the system's code (ECONNREFUSED, ENOTFOUND…) or the message (pure). */
export function networkFailure(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === "string")
    return `${cause.code}${typeof cause.message === "string" ? `: ${cause.message}` : ""}`;
  if ((error as Error | undefined)?.name === "TimeoutError") return "no answer in time";
  return (error as Error | undefined)?.message ?? String(error);
}

/** The message for a hub that cannot be reached at all (pure). */
export function unreachableMessage(hub: Pick<Hub, "endpoint">, failure: string): string {
  return `cannot reach the model hub at ${hub.endpoint} (${failure}): check the network and HF_ENDPOINT, ${LOCAL_FILE_HINT}`;
}

async function hubRequest(
  hub: Hub,
  url: string,
  about: { repo: string; what: string; missing?: string },
  init: {
    method?: string;
    redirect?: RequestRedirect;
    headers?: Record<string, string>;
    signal?: AbortSignal | undefined;
  },
): Promise<Response> {
  const timeout = AbortSignal.timeout(hub.timeoutMs ?? 30_000);
  let response: Response;
  try {
    response = await fetch(url, {
      method: init.method ?? "GET",
      redirect: init.redirect ?? "follow",
      headers: { ...init.headers, ...(hub.token ? { Authorization: `Bearer ${hub.token}` } : {}) },
      signal: init.signal ? AbortSignal.any([init.signal, timeout]) : timeout,
    });
  } catch (error) {
    if (init.signal?.aborted) throw init.signal.reason;
    throw new HubUnreachableError(unreachableMessage(hub, networkFailure(error)));
  }
  const failure = hubAnswerError(
    hub,
    {
      status: response.status,
      statusText: response.statusText,
      errorCode: response.headers.get("x-error-code"),
    },
    about,
  );
  if (failure) {
    await response.body?.cancel().catch(() => undefined);
    throw failure;
  }
  return response;
}
