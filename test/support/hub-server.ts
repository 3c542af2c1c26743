import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

/**
 * A Hugging Face hub on 127.0.0.1, in place of huggingface.co (HF_ENDPOINT points at it), with the
 * hub's real behaviour where twin and node-llama-cpp meet it:
 *
 * - `GET /api/models/<org>/<repo>[/revision/<rev>][?blobs=true]`: the repository's files
 *   (`siblings`: `rfilename`, and with blobs `size` and `lfs: {sha256, size}`) and its commit (`sha`);
 * - `GET /api/models/<org>/<repo>/tree/<rev>[?recursive=true]`: its tree as huggingface_hub's
 *   snapshot_download lists it (`type`, `path`, `oid`, `size`, `lfs: {oid, size, pointerSize}`);
 * - `GET /v2/<org>/<repo>/manifests/<quant>`: the manifest llama.cpp asks for (`ggufFile.rfilename`);
 * - `HEAD|GET /<org>/<repo>/resolve/<rev>/<file>`: a 302 to the storage host (a second port) with
 *   `X-Linked-Size`, `X-Linked-Etag` (the sha256, quoted) and `X-Repo-Commit`;
 * - the storage host serves the bytes, with `Accept-Ranges` and 206 answers to `Range`.
 *
 * A missing repository is 401 (404 with a token) with `X-Error-Code: RepoNotFound`; a gated one
 * answers resolve and manifest requests with 401 without a token and 403 with the wrong one
 * (`X-Error-Code: GatedRepo`). Switches simulate trouble: `corrupt` serves a file with one byte
 * changed, `cut` stops a file's responses at a byte and leaves them hanging (a dropped connection).
 * Every request is logged, with its range and the bytes sent.
 */

export type HubRepo = {
  /** `org/repo` */
  id: string;
  /** Path in the repository → its bytes, or a file on disk to serve. */
  files: Record<string, Buffer | { path: string }>;
  /** Resolve and manifest requests need this bearer token. */
  gated?: { token: string };
  /** Quantization tag (upper case) → the file its manifest names. */
  manifests?: Record<string, string>;
};

export type HubRequest = {
  host: "hub" | "storage";
  method: string;
  path: string;
  /** `org/repo/path` of the file whose bytes the storage host served. */
  file?: string;
  range?: { start: number; end: number };
  status: number;
  /** Body bytes written to the response. */
  sent: number;
  authorized: boolean;
};

type StoredFile = {
  key: string;
  repo: string;
  path: string;
  size: number;
  sha256: string;
  bytes: Buffer | undefined;
  diskPath: string | undefined;
};

const CHUNK = 64 * 1024;

export class HubServer {
  readonly log: HubRequest[] = [];
  /** `org/repo/path` of files served with one byte changed (the same size, another sha256). */
  readonly corrupt = new Set<string>();
  /** Responses carrying `file` (`org/repo/path`) stop at byte `at` and hang there. */
  cut: { file: string; at: number } | undefined;

  private readonly files = new Map<string, StoredFile>();
  private readonly repos = new Map<string, HubRepo & { commit: string }>();
  private hub = http.createServer((request, response) => this.onHub(request, response));
  private storage = http.createServer((request, response) => this.onStorage(request, response));
  endpoint = "";
  storageRoot = "";

  static async start(repos: HubRepo[]): Promise<HubServer> {
    const server = new HubServer();
    for (const repo of repos) {
      const commit = createHash("sha1").update(repo.id).digest("hex");
      server.repos.set(repo.id, { ...repo, commit });
      for (const [file, content] of Object.entries(repo.files)) {
        const bytes = Buffer.isBuffer(content) ? content : undefined;
        const diskPath = Buffer.isBuffer(content) ? undefined : content.path;
        const digest = createHash("sha256");
        if (bytes) digest.update(bytes);
        else await pipeline(fs.createReadStream(diskPath as string), digest);
        const size = bytes ? bytes.length : fs.statSync(diskPath as string).size;
        const key = `${repo.id}/${file}`;
        server.files.set(key, {
          key,
          repo: repo.id,
          path: file,
          size,
          sha256: digest.digest("hex"),
          bytes,
          diskPath,
        });
      }
    }
    server.endpoint = await listen(server.hub);
    server.storageRoot = await listen(server.storage);
    return server;
  }

  /** A repository's commit, as `sha` and `X-Repo-Commit` give it. */
  commitOf(repo: string): string {
    return this.repos.get(repo)?.commit ?? "";
  }

  sha256Of(file: string): string | undefined {
    return this.files.get(file)?.sha256;
  }

  /** GET requests for a file's bytes (the storage host), from the log entry `since` on. */
  downloads(file: string, since = 0): HubRequest[] {
    return this.log.slice(since).filter((r) => r.host === "storage" && r.method === "GET" && r.file === file);
  }

  async stop(): Promise<void> {
    for (const server of [this.hub, this.storage]) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  private onHub(request: http.IncomingMessage, response: http.ServerResponse): void {
    const url = new URL(request.url ?? "/", this.endpoint);
    const entry = this.record("hub", request, url);
    const reply = this.answer(url, request.headers.authorization);
    entry.status = reply.status;
    response.writeHead(reply.status, { "Content-Type": "application/json", ...reply.headers });
    response.end(
      request.method === "HEAD" || reply.body === undefined ? undefined : JSON.stringify(reply.body),
    );
  }

  /** What the hub answers at `url` (its API, manifests and resolve addresses). */
  private answer(url: URL, authorization: string | undefined): Reply {
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);

    // /api/models/<org>/<repo>[/revision/<rev>]
    if (parts[0] === "api" && parts[1] === "models") {
      const repo = this.repos.get(`${parts[2]}/${parts[3]}`);
      if (!repo) return repoNotFound(authorization);
      if (parts[4] === "tree") return this.tree(repo, parts.slice(5).join("/"), url);
      const revision = parts[4] === "revision" ? parts.slice(5).join("/") : "main";
      if (revision !== "main" && revision !== repo.commit) {
        return reply(404, { error: `Invalid rev id: ${revision}` }, { "X-Error-Code": "RevisionNotFound" });
      }
      const blobs = url.searchParams.get("blobs") === "true";
      return reply(200, {
        _id: repo.commit.slice(0, 24),
        id: repo.id,
        modelId: repo.id,
        sha: repo.commit,
        private: false,
        gated: repo.gated ? "manual" : false,
        siblings: Object.keys(repo.files).map((file) => {
          const stored = this.files.get(`${repo.id}/${file}`) as StoredFile;
          return blobs
            ? {
                rfilename: file,
                size: stored.size,
                lfs: { sha256: stored.sha256, size: stored.size, pointerSize: 135 },
              }
            : { rfilename: file };
        }),
      });
    }

    // /v2/<org>/<repo>/manifests/<tag>
    if (parts[0] === "v2" && parts[3] === "manifests") {
      const repo = this.repos.get(`${parts[1]}/${parts[2]}`);
      if (!repo) return repoNotFound(authorization);
      const refused = gate(repo, authorization);
      if (refused) return refused;
      const file = repo.manifests?.[(parts[4] ?? "").toUpperCase()];
      if (!file) return reply(400, { error: "The specified tag is not available in the repository" });
      const stored = this.files.get(`${repo.id}/${file}`) as StoredFile;
      return reply(200, {
        ggufFile: { rfilename: file, size: stored.size, lfs: { sha256: stored.sha256, size: stored.size } },
      });
    }

    // /<org>/<repo>/resolve/<rev>/<file>
    if (parts[2] === "resolve") {
      const repo = this.repos.get(`${parts[0]}/${parts[1]}`);
      if (!repo) return repoNotFound(authorization);
      const refused = gate(repo, authorization);
      if (refused) return refused;
      if (parts[3] !== "main" && parts[3] !== repo.commit) {
        return reply(404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      }
      const stored = this.files.get(`${repo.id}/${parts.slice(4).join("/")}`);
      if (!stored) return reply(404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
      return reply(302, undefined, {
        Location: `${this.storageRoot}/lfs/${stored.sha256}?name=${encodeURIComponent(stored.path)}`,
        "X-Linked-Size": String(stored.size),
        "X-Linked-Etag": `"${stored.sha256}"`,
        "X-Repo-Commit": repo.commit,
        ETag: `"${stored.sha256}"`,
      });
    }
    return reply(404, { error: "not found" });
  }

  /** `/api/models/<repo>/tree/<rev>`: the files (and the folders above them) at the top, or all with `recursive`. */
  private tree(repo: HubRepo & { commit: string }, revision: string, url: URL): Reply {
    if (revision !== "main" && revision !== repo.commit) {
      return reply(404, { error: `Invalid rev id: ${revision}` }, { "X-Error-Code": "RevisionNotFound" });
    }
    const recursive =
      url.searchParams.get("recursive") === "true" || url.searchParams.get("recursive") === "True";
    const folders = new Set<string>();
    const entries: unknown[] = [];
    for (const file of Object.keys(repo.files).sort()) {
      const stored = this.files.get(`${repo.id}/${file}`) as StoredFile;
      const parts = file.split("/");
      for (let depth = 1; depth < parts.length; depth++) folders.add(parts.slice(0, depth).join("/"));
      if (!recursive && parts.length > 1) continue;
      entries.push({
        type: "file",
        path: file,
        oid: createHash("sha1").update(stored.sha256).digest("hex"),
        size: stored.size,
        lfs: { oid: stored.sha256, size: stored.size, pointerSize: 135 },
      });
    }
    for (const folder of [...folders].sort()) {
      if (recursive || !folder.includes("/")) {
        entries.push({
          type: "directory",
          path: folder,
          oid: createHash("sha1").update(folder).digest("hex"),
          size: 0,
        });
      }
    }
    return reply(200, entries);
  }

  private onStorage(request: http.IncomingMessage, response: http.ServerResponse): void {
    const url = new URL(request.url ?? "/", this.storageRoot);
    const entry = this.record("storage", request, url);
    const sha = url.pathname.replace(/^\/lfs\//, "");
    const stored = [...this.files.values()].find((f) => f.sha256 === sha);
    if (!stored) {
      entry.status = 404;
      response.writeHead(404).end();
      return;
    }
    entry.file = stored.key;
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Math.min(Number(range[2]), stored.size - 1) : stored.size - 1;
    if (range && start > end) {
      entry.status = 416;
      response.writeHead(416, { "Content-Range": `bytes */${stored.size}` }).end();
      return;
    }
    if (range) entry.range = { start, end };
    entry.status = range ? 206 : 200;
    response.writeHead(entry.status, {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(end - start + 1),
      "Accept-Ranges": "bytes",
      "Content-Disposition": `attachment; filename="${stored.path.split("/").pop()}"`,
      ETag: `"${stored.sha256}"`,
      ...(range ? { "Content-Range": `bytes ${start}-${end}/${stored.size}` } : {}),
    });
    if (request.method === "HEAD") {
      response.end();
      return;
    }
    const source = stored.bytes
      ? Readable.from(slices(stored.bytes, start, end + 1))
      : fs.createReadStream(stored.diskPath as string, { start, end });
    const flip = this.corrupt.has(stored.key) ? Math.floor(stored.size / 2) : -1;
    const cut = this.cut?.file === stored.key ? this.cut.at : Number.POSITIVE_INFINITY;
    let position = start;
    const shaper = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        let out = chunk;
        if (flip >= position && flip < position + out.length) {
          out = Buffer.from(out);
          out[flip - position] = (out[flip - position] as number) ^ 0xff;
        }
        if (position + out.length > cut) {
          // The bytes stop here; the connection stays open, as a dropped network leaves it.
          const kept = out.subarray(0, Math.max(0, cut - position));
          entry.sent += kept.length;
          position += kept.length;
          this.push(kept);
          return;
        }
        position += out.length;
        entry.sent += out.length;
        done(null, out);
      },
    });
    response.on("close", () => {
      source.destroy();
      shaper.destroy();
    });
    source.pipe(shaper).pipe(response);
  }

  private record(host: HubRequest["host"], request: http.IncomingMessage, url: URL): HubRequest {
    const entry: HubRequest = {
      host,
      method: request.method ?? "GET",
      path: decodeURIComponent(url.pathname),
      status: 0,
      sent: 0,
      authorized: Boolean(request.headers.authorization),
    };
    this.log.push(entry);
    return entry;
  }
}

type Reply = { status: number; body?: unknown; headers: Record<string, string> };

function reply(status: number, body?: unknown, headers: Record<string, string> = {}): Reply {
  return { status, body, headers };
}

/** The hub answers 401 to anyone not logged in, so that private repositories stay unknown. */
function repoNotFound(authorization: string | undefined): Reply {
  return reply(
    authorization ? 404 : 401,
    { error: "Repository not found" },
    { "X-Error-Code": "RepoNotFound" },
  );
}

/** A gated repository lets in its token only: 401 without one, 403 with another. */
function gate(repo: HubRepo, authorization: string | undefined): Reply | undefined {
  if (!repo.gated || authorization === `Bearer ${repo.gated.token}`) return undefined;
  const message = `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it.`;
  return reply(
    authorization ? 403 : 401,
    { error: message },
    { "X-Error-Code": "GatedRepo", "X-Error-Message": message },
  );
}

function* slices(bytes: Buffer, start: number, end: number): Generator<Buffer> {
  for (let at = start; at < end; at += CHUNK) yield bytes.subarray(at, Math.min(at + CHUNK, end));
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** An address where nothing listens: a hub that is down, or a machine without a network. */
export async function closedEndpoint(): Promise<string> {
  const server = http.createServer();
  const address = await listen(server);
  await new Promise((resolve) => server.close(resolve));
  return address;
}
