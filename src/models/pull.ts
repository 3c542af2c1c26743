import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createModelDownloader } from "node-llama-cpp";
import { type Catalogue, type CatalogueEntry, catalogueEntry, loadCatalogue } from "./catalogue.ts";
import { ggufParts } from "./gguf-facts.ts";
import {
  fileHead,
  type Hub,
  type HubFile,
  hubAnswerError,
  networkFailure,
  quantFile,
  repoListing,
  unreachableMessage,
} from "./hub.ts";
import {
  DiskSpaceError,
  DownloadCorruptError,
  HubNotFoundError,
  HubUnreachableError,
  ModelSourceError,
  PairMismatchError,
  PullInterruptedError,
} from "./models.errors.ts";
import type { BaseModel, createModelsRepository } from "./models.repository.ts";
import { isHubRepo, type PairReport, type WeightsTool, weightBytesThere, weightsListing } from "./weights.ts";

type ModelsRepository = ReturnType<typeof createModelsRepository>;

/**
 * `twin model pull`: a catalogue name or a hub URI becomes a registered base model. The order is
 * the point: everything that can refuse (the source, the hub, the licence, the disk) refuses before
 * a byte is downloaded; the download is node-llama-cpp's (ipull), which keeps an interrupted file as
 * `<file>.ipull` with its finished chunks and resumes from them; every file is then checked against
 * the size and sha256 the hub states, and only a model whose files all match is registered.
 * With `weights`, the same model's HF weights come too (listed with the GGUF, so a missing or gated
 * repository and the disk refuse first; fetched by the trainer, weights.ts) and the two are checked
 * to be one model before anything is registered.
 */

/** The quantization a catalogue name is pulled at. */
export const CATALOGUE_QUANT = "Q4_K_M";

export type HubSource = {
  repo: string;
  /** A branch, tag or commit; `main` unless the URI says `#<revision>`. */
  revision: string;
} & ({ file: string; quant?: undefined } | { quant: string; file?: undefined });

/**
 * The hub URI a source names: `hf:…` as given, a catalogue name as `hf:<its GGUF repo>:Q4_K_M`
 * (refused when the entry cannot carry twin's training format) (pure, given the catalogue).
 */
export function pullUri(
  source: string,
  catalogue: () => Catalogue = loadCatalogue,
): { uri: string; entry: CatalogueEntry | undefined } {
  if (/^(hf|huggingface):/.test(source)) return { uri: source, entry: undefined };
  const entry = catalogueEntry(source, catalogue());
  const quant = entry.quants.includes(CATALOGUE_QUANT) ? CATALOGUE_QUANT : (entry.quants[0] as string);
  return { uri: `hf:${entry.gguf}:${quant}`, entry };
}

/** `hf:<org>/<repo>/<path>.gguf[#revision]` or `hf:<org>/<repo>:<quant>` (pure). */
export function parseHubUri(uri: string): HubSource {
  const usage = `${uri}: expected a catalogue name, hf:<org>/<repo>/<file>.gguf or hf:<org>/<repo>:<quant>`;
  const body = uri.replace(/^(hf|huggingface):(\/\/)?/, "");
  const quant = /^([\w.-]+\/[\w.-]+):([\w.-]+)$/.exec(body);
  if (quant) return { repo: quant[1] as string, revision: "main", quant: (quant[2] as string).toUpperCase() };
  const file = /^([\w.-]+\/[\w.-]+)\/([^#]+\.gguf)(?:#([\w./-]+))?$/i.exec(body);
  if (!file) throw new ModelSourceError(usage);
  const filePath = file[2] as string;
  if (filePath.split("/").some((part) => part === "" || part === "." || part === "..")) {
    throw new ModelSourceError(usage);
  }
  return { repo: file[1] as string, revision: file[3] ?? "main", file: filePath };
}

export type PullProgress =
  | { stage: "checked"; uri: string; folder: string; files: HubFile[]; bytes: number; missingBytes: number }
  | { stage: "downloading"; bytes: number; totalBytes: number }
  | { stage: "verifying"; file: string }
  | { stage: "weights"; repo: string; folder: string; line: string }
  | { stage: "pairing"; gguf: string; weights: string }
  | { stage: "paired"; report: PairReport };

export type PullDeps = {
  models: Pick<ModelsRepository, "add">;
  hub: Hub;
  /** The model store (TWIN_MODEL_STORE): a pull lands in `<store>/hub/<org>/<repo>/`. */
  store: string;
  catalogue?: () => Catalogue;
  /** Free bytes on the disk that holds `folder` (fs.statfs unless a test says otherwise). */
  freeBytes?: (folder: string) => Promise<number>;
  /** The trainer's fetch-weights and check-pair; needed only for a pull with `weights`. */
  weights?: WeightsTool;
};

export type PullRequest = {
  /** A catalogue name, `hf:<org>/<repo>/<file>.gguf[#revision]` or `hf:<org>/<repo>:<quant>`. */
  source: string;
  name?: string | undefined;
  makeDefault?: boolean;
  /**
   * The same model's HF weights for the trainer, stored as the model's hfSource: a hub repository
   * (`org/repo`, fetched into `<store>/hub/<org>/<repo>/`) or a folder here; either is checked
   * against the GGUF before the model is registered. Not given: a catalogue entry's `weights`,
   * recorded unfetched (the worker fetches and checks them on first use), or none for a bare hf:
   * URI (the trainer then uses the GGUF).
   */
  weights?: string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: (progress: PullProgress) => void;
};

export type PullResult = { model: BaseModel; uri: string; files: string[] };

export async function pullModel(deps: PullDeps, request: PullRequest): Promise<PullResult> {
  const { hub } = deps;
  const { signal } = request;
  const report = request.onProgress ?? (() => undefined);

  // ── What to fetch: the source, the file a quantization names, its parts, their sizes and sha256 ──
  const { uri, entry } = pullUri(request.source, deps.catalogue);
  const source = parseHubUri(uri);
  const weights = await weightsPlan(deps, request);
  const { file, commit, wanted } = await hubFiles(hub, source, signal).catch((error: unknown) => {
    if (signal?.aborted)
      throw new PullInterruptedError("interrupted before the download began; nothing was kept");
    throw error;
  });

  // ── Room on the disk, before the first byte ──
  const folder = path.join(deps.store, "hub", ...source.repo.split("/"), path.dirname(file));
  await fs.mkdir(folder, { recursive: true });
  const targets = wanted.map((part) => ({ ...part, local: path.join(folder, path.basename(part.path)) }));
  const bytes = targets.reduce((sum, t) => sum + t.size, 0);
  const onDisk = await Promise.all(targets.map((t) => bytesAlreadyThere(t.local, t.size)));
  const missingBytes =
    targets.reduce((sum, t, i) => sum + t.size - (onDisk[i] ?? 0), 0) + (weights?.missingBytes ?? 0);
  const free = await (deps.freeBytes ?? freeBytes)(folder);
  if (free < missingBytes) {
    const what = weights?.listing ? `${uri} and the weights ${weights.listing.repo}` : uri;
    const all = bytes + (weights?.bytes ?? 0);
    throw new DiskSpaceError(
      `${folder}: ${what} need${weights?.listing ? "" : "s"} ${gigabytes(missingBytes)} more (${gigabytes(all)} in all), the disk has ${gigabytes(free)} free — make room, or set TWIN_MODEL_STORE to a bigger disk`,
    );
  }
  report({ stage: "checked", uri, folder, files: wanted, bytes, missingBytes });

  // ── Download (node-llama-cpp's downloader: every part of a split GGUF, resumable) ──
  await download(hub, { repo: source.repo, commit, file, folder, bytes }, request);

  // ── Verify every file against the hub's size and sha256; delete what does not match ──
  const problems: string[] = [];
  for (const target of targets) {
    report({ stage: "verifying", file: target.local });
    const problem = await mismatch(target.local, target);
    if (problem) {
      await fs.rm(target.local, { force: true });
      await fs.rm(`${target.local}.ipull`, { force: true });
      problems.push(`${target.local}: ${problem}`);
    }
  }
  if (problems.length > 0) {
    throw new DownloadCorruptError(
      `${problems.join("; ")} — not what ${hub.endpoint} says ${source.repo} holds at ${commit.slice(0, 12)}; deleted, nothing registered. Pull again; if it repeats, the mirror (HF_ENDPOINT) serves damaged files`,
    );
  }

  // ── The weights: fetched (resumable), then checked to be the same model as the GGUF ──
  const local = targets.map((t) => t.local);
  const paired = weights ? await fetchAndCheck(deps, request, weights, local[0] as string) : undefined;

  // ── Register, as `twin model add` does ──
  const model = await deps.models.add({
    ggufPath: local[0] as string,
    hfSource: weights?.source ?? entry?.weights,
    pairedWeights: paired && {
      revision: weights?.listing?.commit,
      fingerprint: paired.weights_fingerprint,
    },
    name: request.name ?? entry?.name ?? modelName(file),
    makeDefault: request.makeDefault ?? false,
  });
  return { model, uri, files: local };
}

type WeightsPlan = {
  /** What the model's hfSource records: the hub id, or the folder's absolute path. */
  source: string;
  folder: string;
  /** The hub repository's listing; none for weights already in a folder here. */
  listing: { repo: string; commit: string; files: HubFile[] } | undefined;
  bytes: number;
  missingBytes: number;
};

/** The weights a pull brings, when it names them: a hub repository's listing, or a folder here. */
async function weightsPlan(deps: PullDeps, request: PullRequest): Promise<WeightsPlan | undefined> {
  const source = request.weights;
  if (source === undefined) return undefined;
  if (!deps.weights)
    throw new ModelSourceError(`--weights ${source}: no trainer to fetch and check weights with`);
  const local = await fs.stat(source).catch(() => undefined);
  if (local?.isDirectory()) {
    const folder = path.resolve(source);
    return { source: folder, folder, listing: undefined, bytes: 0, missingBytes: 0 };
  }
  if (!isHubRepo(source)) {
    throw new ModelSourceError(
      `--weights ${source}: expected a hub repository <org>/<repo> or a folder here`,
    );
  }
  const listing = await weightsListing(deps.hub, source, request.signal).catch((error: unknown) => {
    if (request.signal?.aborted)
      throw new PullInterruptedError("interrupted before the download began; nothing was kept");
    throw error;
  });
  const folder = path.join(deps.store, "hub", ...source.split("/"));
  const bytes = listing.files.reduce((sum, file) => sum + file.size, 0);
  return {
    source,
    folder,
    listing,
    bytes,
    missingBytes: bytes - (await weightBytesThere(folder, listing.files)),
  };
}

async function fetchAndCheck(
  deps: PullDeps,
  request: PullRequest,
  weights: WeightsPlan,
  gguf: string,
): Promise<PairReport> {
  const tool = deps.weights as WeightsTool;
  const report = request.onProgress ?? (() => undefined);
  if (weights.listing) {
    const { repo, commit } = weights.listing;
    await tool.fetch({
      hub: deps.hub,
      repo,
      revision: commit,
      dest: weights.folder,
      signal: request.signal,
      onLine: (line) => report({ stage: "weights", repo, folder: weights.folder, line }),
    });
  }
  report({ stage: "pairing", gguf, weights: weights.folder });
  const paired = await tool
    .check({ gguf, weights: weights.folder, signal: request.signal })
    .catch((error) => {
      if (!(error instanceof PairMismatchError)) throw error;
      throw new PairMismatchError(
        `${error.message} — nothing registered (both stay on disk). Name the weights this GGUF was made from, or pull without --weights to train from the GGUF itself`,
      );
    });
  report({ stage: "paired", report: paired });
  return paired;
}

/**
 * The file a source names (asking the manifest for a quantization), every part of it when it is
 * split, and what the hub says each holds: its listing's size and sha256, and the resolve HEAD's.
 */
async function hubFiles(
  hub: Hub,
  source: HubSource,
  signal: AbortSignal | undefined,
): Promise<{ file: string; commit: string; wanted: HubFile[] }> {
  const file = source.file ?? (await quantFile(hub, source.repo, source.quant, signal));
  const listing = await repoListing(hub, source.repo, source.revision, signal);
  const listed = new Map(listing.files.map((f) => [f.path, f]));
  const wanted: HubFile[] = [];
  for (const part of ggufParts(file)) {
    const known = listed.get(part);
    if (!known) {
      throw new HubNotFoundError(
        `${source.repo} has no ${part} at ${source.revision === "main" ? "its main branch" : source.revision} on ${hub.endpoint}`,
      );
    }
    // Pinned to the listing's commit: every part comes from the same revision. The HEAD is also
    // where a gated repository refuses, before anything downloads.
    const head = await fileHead(hub, source.repo, listing.commit, part, signal);
    wanted.push({ path: part, size: head.size ?? known.size, sha256: head.sha256 ?? known.sha256 });
  }
  return { file, commit: listing.commit, wanted };
}

/** A model's default name: its file's, less `.gguf` and a split part's `-00001-of-00003` (pure). */
export function modelName(file: string): string {
  return path.basename(file).replace(/(-\d{5}-of-\d{5})?\.gguf$/i, "");
}

async function download(
  hub: Hub,
  what: { repo: string; commit: string; file: string; folder: string; bytes: number },
  request: PullRequest,
): Promise<void> {
  const { signal } = request;
  let downloadedBytes = 0;
  let downloader: Awaited<ReturnType<typeof createModelDownloader>> | undefined;
  try {
    downloader = await createModelDownloader({
      // Pinned to the commit the sizes and sha256 were read at; split parts follow from the name.
      modelUri: `hf:${what.repo}/${what.file}#${what.commit}`,
      dirPath: what.folder,
      fileName: path.basename(what.file),
      endpoints: { huggingFace: `${hub.endpoint}/` },
      // null (which its types leave out) keeps it from reading ~/.cache/huggingface/token: the
      // metadata requests above send HF_TOKEN alone, and the download must be let in as they were.
      tokens: { huggingFace: hub.token ?? (null as unknown as undefined) },
      // Keep `<file>.ipull` (the chunks so far and ipull's record of them) for the next run to resume.
      deleteTempFileOnCancel: false,
      skipExisting: true,
      showCliProgress: false,
      onProgress: ({ downloadedSize }) => {
        downloadedBytes = downloadedSize;
        request.onProgress?.({ stage: "downloading", bytes: downloadedSize, totalBytes: what.bytes });
      },
    });
    if (signal?.aborted) throw signal.reason;
    await downloader.download(signal ? { signal } : {});
  } catch (error) {
    // Stop every part (a split's others may still run) and close the files, keeping them to resume.
    await downloader?.cancel({ deleteTempFile: false }).catch(() => undefined);
    if (signal?.aborted) throw interrupted(what, downloadedBytes);
    throw downloadError(hub, what, error);
  }
  // A cancelled download returns as if it had finished: the signal says which it was.
  if (signal?.aborted) throw interrupted(what, downloadedBytes);
}

function interrupted(what: { folder: string; bytes: number }, bytes: number): PullInterruptedError {
  return new PullInterruptedError(
    `interrupted at ${megabytes(bytes)} of ${megabytes(what.bytes)}; the downloaded part is kept in ${what.folder} — run the same command again to resume`,
  );
}

/** ipull's errors as hub errors; they carry the request's headers, so none is kept as a cause. */
function downloadError(hub: Hub, what: { repo: string; file: string }, error: unknown): Error {
  const failed = error as {
    statusCode?: unknown;
    statusText?: unknown;
    responseHeaders?: Record<string, string>;
    code?: unknown;
  };
  if (typeof failed?.statusCode === "number") {
    const answer = hubAnswerError(
      hub,
      {
        status: failed.statusCode,
        statusText: typeof failed.statusText === "string" ? failed.statusText : "",
        errorCode: failed.responseHeaders?.["x-error-code"],
      },
      { repo: what.repo, what: `${what.repo}/${what.file}` },
    );
    if (answer) return answer;
  }
  if (failed?.code === "ENOSPC") {
    return new DiskSpaceError(
      `the disk filled up while downloading ${what.file}: make room and pull again to resume`,
    );
  }
  const reason = networkFailure(error);
  const redacted = hub.token ? reason.split(hub.token).join("<HF_TOKEN>") : reason;
  if (error instanceof TypeError || typeof failed?.code === "string") {
    return new HubUnreachableError(unreachableMessage(hub, redacted));
  }
  return new HubUnreachableError(
    `downloading ${what.repo}/${what.file} from ${hub.endpoint} failed (${redacted}): pull again to resume, or download the .gguf another way and register it with \`twin model add <file.gguf>\``,
  );
}

/** Bytes of `file` already on disk: all of it when done, else what its `.ipull` holds (sparse-aware). */
async function bytesAlreadyThere(file: string, size: number): Promise<number> {
  const done = await fs.stat(file).catch(() => undefined);
  if (done?.isFile() && done.size === size) return size;
  const partial = await fs.stat(`${file}.ipull`).catch(() => undefined);
  return partial ? Math.min(partial.blocks * 512, size) : 0;
}

async function freeBytes(folder: string): Promise<number> {
  const stats = await fs.statfs(folder);
  return stats.bavail * stats.bsize;
}

/** Why `file` is not the hub's file, or undefined when its size and sha256 match. */
async function mismatch(file: string, expected: HubFile): Promise<string | undefined> {
  const stat = await fs.stat(file).catch(() => undefined);
  if (!stat) return "missing after the download";
  if (stat.size !== expected.size) return `${stat.size} bytes, the hub says ${expected.size}`;
  if (!expected.sha256) return undefined;
  const digest = createHash("sha256");
  await pipeline(createReadStream(file), digest);
  const actual = digest.digest("hex");
  return actual === expected.sha256
    ? undefined
    : `sha256 ${actual.slice(0, 12)}…, the hub says ${expected.sha256.slice(0, 12)}…`;
}

function gigabytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${bytes} bytes`;
}

function megabytes(bytes: number): string {
  return `${Math.round(bytes / 1e6)} MB`;
}
