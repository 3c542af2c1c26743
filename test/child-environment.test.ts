import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { secretVariables } from "../src/config/config.ts";
import { runReport } from "../src/evaluation/report-runner.ts";
import { createModelsRepository } from "../src/models/models.repository.ts";
import { LocalWorker } from "../src/training/local-worker.ts";
import { createRunsRepository } from "../src/training/runs.repository.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { testModel } from "./support/models.ts";

/**
 * The trainer's worker and the evaluation report run as child processes. They get what Python
 * needs and the database URL, never the bot token, the session key or the API credentials: read
 * from the child's own /proc/<pid>/environ, as anyone on the machine with its rights could.
 */
describe("child processes: started without twin's secrets, stopped within their grace", {
  timeout: 120_000,
}, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "twin-child-env-"));
  // Stands in for the trainer's Python: records its environment as /proc shows it; "worker" stays up.
  const python = path.join(tmp, "python");
  const secrets: Record<string, string> = {
    TWIN_BOT_TOKEN: "123456789:AAE-child_env_test_token_0123456789",
    TWIN_SESSION_KEY: "ab".repeat(32),
    TWIN_API_ID: "7654321",
    TWIN_API_HASH: "0123456789abcdef0123456789abcdef",
    TWIN_WEBHOOK_SECRET: "child-env-test-webhook-secret-0123456789",
  };
  const saved = { ...process.env };
  let database: TestDatabase;

  const environ = (file: string) =>
    Object.fromEntries(
      fs
        .readFileSync(file, "utf8")
        .split("\0")
        .filter(Boolean)
        .map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]),
    );
  const assertClean = (env: Record<string, string>, databaseUrl: string) => {
    for (const name of secretVariables) assert.equal(env[name], undefined, `${name} is not passed on`);
    const all = Object.values(env).join("\n");
    for (const value of Object.values(secrets))
      assert.ok(!all.includes(value), "no secret value under any name");
    assert.equal(env.DATABASE_URL, databaseUrl, "the database URL is");
    assert.equal(env.PATH, process.env.PATH, "PATH is");
    assert.equal(env.HF_HOME, "/tmp/hf-home", "Hugging Face's settings are");
    assert.equal(
      env.TWIN_PARENT_PID,
      String(process.pid),
      "and twin's pid, by which the trainer dies with it",
    );
  };

  before(async () => {
    fs.writeFileSync(
      python,
      `#!/bin/sh\ncat /proc/$$/environ > "$(dirname "$0")/environ-$3"\n[ "$3" = worker ] && exec sleep 60\nexit 0\n`,
      { mode: 0o755 },
    );
    Object.assign(process.env, secrets, { HF_HOME: "/tmp/hf-home" });
    database = await (backends()[0] as ReturnType<typeof backends>[number]).fresh();
  });
  after(async () => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
    await database?.close();
    await stopEmbedded();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("the training worker", async () => {
    const worker = new LocalWorker({
      config: { ...database.config.training, python },
      databaseUrl: database.url,
      runs: createRunsRepository(database),
    });
    worker.start();
    const pid = worker.pid as number;
    assert.ok(pid > 0);
    const deadline = Date.now() + 10_000;
    while (!fs.existsSync(path.join(tmp, "environ-worker")) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    try {
      assertClean(environ(`/proc/${pid}/environ`), database.url);
    } finally {
      await worker.stop();
    }
  });

  it("the evaluation report", async () => {
    await runReport({ ...database.config.training, python }, database.url, 1);
    assertClean(environ(path.join(tmp, "environ-report")), database.url);
  });

  it("a worker that does not stop within its grace is killed, and its run goes back to the queue", async () => {
    const stubborn = path.join(tmp, "stubborn-python");
    fs.writeFileSync(stubborn, "#!/bin/sh\ntrap '' TERM\nsleep 60 & wait\nsleep 60\n", { mode: 0o755 });
    const runs = createRunsRepository(database);
    const model = await createModelsRepository(database).add({ ggufPath: testModel() });
    const { rows } = await database.pool.query<{ id: number }>(
      "INSERT INTO datasets (status, format_version, settings) VALUES ('ready', 1, '{}') RETURNING id",
    );
    const run = await runs.queue({
      datasetId: rows[0]?.id as number,
      baseModelId: model.id,
      config: {} as never,
      method: "lora",
      estimate: { steps: 1, seconds: null },
      target: "any",
      needsGpu: false,
    });
    const worker = new LocalWorker({
      config: { ...database.config.training, python: stubborn },
      databaseUrl: database.url,
      runs,
    });
    worker.start();
    const pid = worker.pid as number;
    // The run is this worker's, as the trainer's worker marks a run it claims (its id begins host:pid).
    await database.pool.query(
      "UPDATE training_runs SET status = 'running', worker = $1, heartbeat_at = now() WHERE id = $2",
      [`${os.hostname()}:${pid}:abc123`, run.id],
    );
    await new Promise((resolve) => setTimeout(resolve, 200)); // its SIGTERM trap is set
    const began = Date.now();
    await worker.stop(1_000);
    assert.ok(Date.now() - began < 3_000, "within its grace and a moment");
    assert.throws(() => process.kill(pid, 0), "the worker process is gone");
    assert.equal((await runs.get(run.id))?.status, "queued", "its run is back in the queue");
  });
});
