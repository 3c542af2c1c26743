/**
 * bench/train/estimate — the training estimate against the wall time of real runs on this machine.
 * Imports the IRC fixture into a scratch embedded database, builds a dataset (counted with the test
 * model's tokenizer), registers SmolLM2-135M, then runs `twin train --yes --set max_steps=N` twice
 * through the CLI, as a user would: the first run is planned with the prior (the model's size and
 * this machine's cores), the second with the first run's measured pace. For each it prints the
 * estimate shown before the run (point and range), the whole command's wall time, their ratio,
 * and where the time went (from the run's event times). The bar: within 1.5× (docs/training.md).
 *
 *   npx tsx bench/train/estimate.bench.ts [steps]        (default 10; about 7 minutes on 2 cores)
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config/config.ts";
import { openDatabase } from "../../src/db/client.ts";
import { timeRun } from "../../src/training/plan.ts";
import { createRunsRepository } from "../../src/training/runs.repository.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const steps = Number(process.argv[2] ?? 10);
const fixture = path.resolve(root, "../shared/fixtures/irc/ubuntu_irc_as_telegram_export.json");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bench-estimate-"));
fs.chmodSync(work, 0o755);
const env: NodeJS.ProcessEnv = { ...process.env, TWIN_DATA_DIR: path.join(work, "data"), TWIN_TZ: "UTC" };
delete env.DATABASE_URL;

function twin(...args: string[]) {
  const started = performance.now();
  const run = spawnSync(process.execPath, ["bin/twin.js", ...args], {
    cwd: root,
    env,
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  if (run.status !== 0) throw new Error(`twin ${args.join(" ")} failed:\n${run.stdout}\n${run.stderr}`);
  return { seconds: (performance.now() - started) / 1000, stdout: run.stdout };
}

const f = (seconds: number) => `${seconds.toFixed(1)} s`;

try {
  const model = spawnSync(process.execPath, ["scripts/test-model.mjs"], { cwd: root, encoding: "utf8" });
  const gguf = model.stdout.trim();
  twin("import", fixture);
  twin("dataset", "--groups", "--since", "all", "--tokenizer", gguf);
  twin("model", "add", gguf);
  for (const attempt of [1, 2]) {
    const load = os.loadavg()[0]?.toFixed(2);
    const run = twin("train", "--yes", "--set", `max_steps=${steps}`);
    const id = Number(/queued run (\d+)/.exec(run.stdout)?.[1]);
    const database = await openDatabase(loadConfig(env));
    try {
      const runs = createRunsRepository(database);
      const stored = await runs.get(id);
      const estimate = stored?.estimate;
      const events = await runs.events(id);
      const timed = timeRun(events);
      const plan = /time: (.*)\n/.exec(run.stdout)?.[1] ?? "";
      process.stdout.write(
        `run ${attempt} (${estimate?.parts?.source ?? "?"} pace; load average ${load} before it): ${stored?.status}\n` +
          `  shown:     ${plan}\n` +
          `  estimate:  ${f(estimate?.seconds ?? 0)} (${f(estimate?.low ?? 0)}–${f(estimate?.high ?? 0)}): setup ${f(estimate?.parts?.setup ?? 0)}, ` +
          `${steps} × ${f(estimate?.parts?.step ?? 0)}, ${estimate?.parts?.finalEvalPasses} passes × ${f(estimate?.parts?.evalPass ?? 0)} ` +
          `(${estimate?.parts?.evalExamples} examples), finish ${f(estimate?.parts?.finish ?? 0)}\n` +
          `  actual:    ${f(run.seconds)} for the whole \`twin train\` command; ratio ${(run.seconds / (estimate?.seconds ?? 1)).toFixed(2)}\n` +
          (timed
            ? `  measured:  setup ${f(timed.setup)}, ${timed.steps} × ${f(timed.stepSeconds / timed.steps)}, ` +
              `${timed.evalPasses} passes × ${f(timed.evalSeconds / Math.max(1, timed.evalPasses))}, ` +
              `checkpoints ${f(timed.checkpointSeconds)}, finish ${f(timed.finish)}\n`
            : ""),
      );
    } finally {
      await database.close();
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
