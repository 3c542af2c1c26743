import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { generateExport } from "../bench/import/generate-export.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";

/**
 * A crash never locks the owner out: real `twin` processes are killed with SIGKILL mid-work, and
 * the next command must find the store usable, the killed work marked, and no process of the
 * killed twin left running (the embedded PostgreSQL excepted: the next twin takes it over).
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MESSAGES = 150_000;
const STALE_S = 2;

type Run = {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; output: string }>;
};

function start(env: NodeJS.ProcessEnv, ...args: string[]): Run {
  const child = spawn(process.execPath, [path.join(root, "bin/twin.js"), ...args], { cwd: root, env });
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const done = new Promise<{ code: number | null; signal: string | null; output: string }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal, output })),
  );
  return { child, done };
}

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Processes (other than PostgreSQL's) whose environment names this data folder: twin's and its children's. */
function processesOf(dataDir: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const comm = fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      if (comm === "postgres") continue;
      if (fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0").includes(`TWIN_DATA_DIR=${dataDir}`))
        found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** A plain connection to the embedded server of `dataDir` (no presence: it does not keep the server up). */
async function query<T extends pg.QueryResultRow>(dataDir: string, sql: string, values: unknown[] = []) {
  const [, , , port] = fs.readFileSync(path.join(dataDir, "postgres/postmaster.pid"), "utf8").split("\n");
  const password = fs.readFileSync(path.join(dataDir, "postgres.secret"), "utf8").trim();
  const client = new pg.Client({
    host: "127.0.0.1",
    port: Number(port),
    user: "twin",
    password,
    database: "twin",
  });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

const postmasterPid = (dataDir: string) => {
  const text = fs.readFileSync(path.join(dataDir, "postgres/postmaster.pid"), "utf8");
  return Number(text.split("\n")[0]);
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("lifecycle: a twin killed with SIGKILL locks nobody out", { timeout: 600_000 }, () => {
  // World-traversable: as root, the embedded PostgreSQL runs as its own user.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "twin-lifecycle-"));
  fs.chmodSync(work, 0o755);
  const exportFile = path.join(work, "result.json");
  const dataDir = path.join(work, "data");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TWIN_DATA_DIR: dataDir,
    TWIN_WORKER_STALE_S: String(STALE_S),
    TWIN_IMPORT_BATCH: "5000",
    TWIN_TZ: "UTC",
  };
  delete env.DATABASE_URL;
  delete env.UV_THREADPOOL_SIZE; // the CLI sets it itself, in the one process it runs

  before(async () => {
    await generateExport(exportFile, { messages: MESSAGES, chats: 40 });
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  it("a second command joins the running embedded server; kill -9 leaves no twin process; the next takes the server over", async () => {
    const importing = start(env, "import", exportFile);
    await waitUntil("the import's server", () =>
      fs.existsSync(path.join(dataDir, "postgres/postmaster.pid")),
    );
    await waitUntil("a committed batch", async () => {
      const rows = await query<{ committed: string }>(
        dataDir,
        "SELECT committed_bytes AS committed FROM imports ORDER BY id DESC LIMIT 1",
      ).catch(() => []);
      return Number(rows[0]?.committed ?? 0) > 0;
    });
    // Frozen mid-import (its server connection and presence held), so it cannot finish while the
    // second command starts: on a fast machine 150,000 messages took less than that command.
    importing.child.kill("SIGSTOP");

    const beside = await start(env, "stats").done;
    assert.equal(beside.code, 0, `a second command beside a running twin works: ${beside.output}`);
    assert.doesNotMatch(beside.output, /in use/);
    assert.equal(importing.child.exitCode, null, "and the import is still running");
    const server = postmasterPid(dataDir);
    const killedAt = Date.now();
    importing.child.kill("SIGKILL");
    await importing.done;
    await waitUntil("no process of the killed twin", () => processesOf(dataDir).length === 0, 5_000);
    assert.ok(Date.now() - killedAt < 5_000, "within 5 s");
    assert.ok(alive(server), "the embedded server outlives it, as the only exception");

    const [killed] = await query<{ id: number; status: string }>(
      dataDir,
      "SELECT id, status FROM imports ORDER BY id DESC LIMIT 1",
    );
    assert.equal(killed?.status, "running", "the killed import's row still says running");
    await new Promise((resolve) => setTimeout(resolve, STALE_S * 1000 + 500)); // its heartbeat goes stale

    const stats = await start(env, "stats").done;
    assert.equal(stats.code, 0, `the next command works: ${stats.output}`);
    assert.doesNotMatch(stats.output, /in use/);
    assert.ok(!alive(server), "the last twin to leave stopped the orphaned server it took over");

    const again = await start(env, "import", exportFile).done;
    assert.equal(again.code, 0, again.output);
    await withServer(dataDir, async (client) => {
      const { rows } = await client.query<{ status: string; error: string | null }>(
        "SELECT status, error FROM imports ORDER BY id",
      );
      assert.deepEqual(
        rows.map((row) => row.status),
        ["interrupted", "succeeded"],
        "the killed import is marked interrupted, the same import again finished it",
      );
      assert.match(rows[0]?.error ?? "", /import the same file again to resume/);
      const stored = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM messages");
      assert.equal(
        stored.rows[0]?.n,
        messagesIn(exportFile),
        "every message once: nothing lost, nothing twice",
      );
    });
  });
  it("twin dataset --out killed midway leaves the previous folder whole; the killed build is failed, its rows removed", async () => {
    const out = path.join(work, "dataset");
    const build = (...extra: string[]) =>
      start(env, "dataset", "--groups", "--since", "all", "--memory", "off", "--out", out, ...extra);
    const first = await build().done;
    assert.equal(first.code, 0, first.output);
    const snapshot = () =>
      ["train.jsonl", "eval.jsonl", "manifest.json"].map((f) => fs.readFileSync(path.join(out, f)));
    const before = snapshot();

    const second = build("--loss", "owner");
    await waitUntil(
      "the second build writing its staging folder",
      () =>
        fs.readdirSync(work).some((name) => {
          if (!name.startsWith(".dataset.partial-")) return false;
          const train = path.join(work, name, "train.jsonl");
          return fs.existsSync(train) && fs.statSync(train).size > 1_000_000;
        }),
      120_000,
    );
    second.child.kill("SIGKILL");
    await second.done;
    assert.deepEqual(snapshot(), before, "the folder is the previous build's, whole");
    await new Promise((resolve) => setTimeout(resolve, STALE_S * 1000 + 500));

    const third = await build("--max-tokens", "512").done;
    assert.equal(third.code, 0, third.output);
    assert.ok(
      !fs.readdirSync(work).some((name) => name.includes(".partial-")),
      "the killed build's staging folder is gone",
    );
    await withServer(dataDir, async (client) => {
      const { rows } = await client.query<{ id: number; status: string; examples: number }>(
        `SELECT d.id, d.status, (SELECT count(*) FROM dataset_examples e WHERE e.dataset_id = d.id)::int AS examples
         FROM datasets d ORDER BY d.id`,
      );
      assert.deepEqual(
        rows.map((row) => row.status),
        ["ready", "failed", "ready"],
        "the killed build is marked failed",
      );
      assert.equal(rows[1]?.examples, 0, "and the rows it wrote are removed");
    });
  });
  it("the training worker a twin started dies with it when the twin is killed", async () => {
    const added = await start(env, "model", "add", testModel()).done;
    assert.equal(added.code, 0, added.output);
    const training = start({ ...env, TWIN_WORKER: "local" }, "train", "--yes", "--set", "max_steps=500");
    const commandLine = (pid: number) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        return ""; // gone meanwhile
      }
    };
    const python = () =>
      processesOf(dataDir).filter(
        (pid) => pid !== training.child.pid && commandLine(pid).includes("twin_trainer"),
      );
    await waitUntil("the training worker", () => python().length > 0, 120_000);
    const killedAt = Date.now();
    training.child.kill("SIGKILL");
    await training.done;
    await waitUntil("no trainer process left", () => processesOf(dataDir).length === 0, 5_000);
    assert.ok(Date.now() - killedAt < 5_000, "within 5 s of the kill");
  });

  it("refuses a server in the folder that does not let twin in, naming its pid, at once", async () => {
    const other = path.join(work, "other");
    const server = await startEmbeddedPostgres({ dataDir: other, port: 0 });
    const secret = path.join(other, "postgres.secret");
    const kept = fs.readFileSync(secret);
    try {
      fs.writeFileSync(secret, "not-this-server-s-password\n"); // as another cluster's server would be
      const began = Date.now();
      const refused = await start({ ...env, TWIN_DATA_DIR: other }, "stats").done;
      assert.equal(refused.code, 1);
      assert.match(
        refused.output,
        new RegExp(`held by PostgreSQL process ${server.pid}, which is not twin's or not healthy`),
        refused.output,
      );
      assert.ok(Date.now() - began < 20_000, "without waiting for a server that will never let it in");
    } finally {
      fs.writeFileSync(secret, kept);
      await server.stop();
    }
    assert.ok(!alive(server.pid), "the last twin on it stopped it");
  });
});

/** Runs `work` on the embedded server of `dataDir`, started (or joined) through the product's own code. */
async function withServer(dataDir: string, work: (client: pg.Client) => Promise<void>) {
  const server = await startEmbeddedPostgres({ dataDir, port: 0 });
  const client = new pg.Client(server.connection);
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
    await server.stop();
  }
}

/** Messages in an export, counted from the file itself: one per (chat, id). */
function messagesIn(file: string): number {
  const parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  const chats = [...parsed.chats.list, ...(parsed.left_chats?.list ?? [])];
  return chats.reduce(
    (n: number, chat: { messages: { id: number }[] }) => n + new Set(chat.messages.map((m) => m.id)).size,
    0,
  );
}

/**
 * On any server, embedded or at DATABASE_URL: killed work is told from live work by its heartbeat,
 * so processes sharing one database never mark each other's live import.
 */
for (const backend of backends()) {
  describe(`lifecycle on ${backend.name} PostgreSQL: heartbeats`, { timeout: 600_000 }, () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "twin-heartbeat-"));
    fs.chmodSync(work, 0o755);
    const big = path.join(work, "big.json");
    const small = path.join(work, "small.json");
    let database: TestDatabase;
    let env: NodeJS.ProcessEnv;
    const imports = async () =>
      (
        await database.pool.query<{ status: string; file_name: string }>(
          "SELECT status, file_name FROM imports ORDER BY id",
        )
      ).rows;

    const untilACommittedBatch = () =>
      waitUntil("a committed batch", async () => {
        const { rows } = await database.pool.query<{ committed: string }>(
          "SELECT committed_bytes AS committed FROM imports ORDER BY id DESC LIMIT 1",
        );
        return Number(rows[0]?.committed ?? 0) > 0;
      });

    before(async () => {
      await generateExport(big, { messages: MESSAGES, chats: 40, seed: 7 });
      await generateExport(small, { messages: 2_000, chats: 3, seed: 8 });
      database = await backend.fresh();
      env = {
        ...process.env,
        DATABASE_URL: database.url,
        TWIN_WORKER_STALE_S: String(STALE_S),
        TWIN_IMPORT_BATCH: "5000",
        TWIN_TZ: "UTC",
      };
      delete env.UV_THREADPOOL_SIZE;
    });
    after(async () => {
      await database?.close();
      await stopEmbedded();
      fs.rmSync(work, { recursive: true, force: true });
    });

    it("a live import is never marked by another process; a killed one is marked interrupted, and resumes", async () => {
      const live = start(env, "import", big);
      await waitUntil("the big import under way", async () => (await imports()).length > 0);
      await new Promise((resolve) => setTimeout(resolve, STALE_S * 1000 + 500)); // older than the limit: only its heartbeat keeps it live
      const beside = await start(env, "import", small).done;
      assert.equal(beside.code, 0, beside.output);
      const finished = await live.done;
      assert.equal(finished.code, 0, finished.output);
      assert.deepEqual(
        (await imports()).map((row) => row.status),
        ["succeeded", "succeeded"],
        "the import beside it did not mark the live one",
      );

      await database.pool.query("TRUNCATE messages, chats, people, owner, imports");
      const killed = start(env, "import", big);
      await untilACommittedBatch();
      killed.child.kill("SIGKILL");
      await killed.done;
      await new Promise((resolve) => setTimeout(resolve, STALE_S * 1000 + 500));
      const again = await start(env, "import", big).done;
      assert.equal(again.code, 0, again.output);
      assert.deepEqual(
        (await imports()).map((row) => row.status),
        ["interrupted", "succeeded"],
      );
      const { rows } = await database.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM messages");
      assert.equal(rows[0]?.n, messagesIn(big), "every message once");
    });

    it("SIGTERM stops an import within 10 s: its batch committed or dropped, marked interrupted at once, resumed by the same import", async () => {
      await database.pool.query("TRUNCATE messages, chats, people, owner, imports");
      const stopped = start(env, "import", big);
      await untilACommittedBatch();
      const signalledAt = Date.now();
      stopped.child.kill("SIGTERM");
      const ended = await stopped.done;
      const seconds = (Date.now() - signalledAt) / 1000;
      assert.ok(seconds < 10, `ended ${seconds.toFixed(1)} s after SIGTERM`);
      assert.equal(ended.code, 130, ended.output);
      assert.match(ended.output, /import the same file again to resume/);
      assert.deepEqual(
        (await imports()).map((row) => row.status),
        ["interrupted"],
        "interrupted at once, without waiting for its heartbeat to go stale",
      );
      const again = await start(env, "import", big).done;
      assert.equal(again.code, 0, again.output);
      const { rows } = await database.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM messages");
      assert.equal(rows[0]?.n, messagesIn(big), "every message once");
    });
  });
}
