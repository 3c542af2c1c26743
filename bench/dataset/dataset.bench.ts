/**
 * bench/dataset — builds a dataset from 1,000,000 stored messages (a generated whole-account
 * export across 500 chats, imported first) into PostgreSQL and JSONL. Prints sessions/s,
 * examples/s and the peak RSS of the build process.
 *
 *   npm run bench:dataset [-- 1000000]
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generateExport } from "../import/generate-export.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const messages = Number(process.argv[2] ?? 1_000_000);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bench-dataset-"));
fs.chmodSync(work, 0o755);
const env: NodeJS.ProcessEnv = { ...process.env, TWIN_DATA_DIR: path.join(work, "data"), TWIN_TZ: "UTC" };
delete env.DATABASE_URL;

/** Runs the real CLI; returns its wall time and peak RSS (GNU time's %M, in KB). */
function twin(...args: string[]) {
  const started = performance.now();
  const run = spawnSync("/usr/bin/time", ["-f", "PEAK_RSS_KB=%M", process.execPath, "bin/twin.js", ...args], {
    cwd: root,
    env,
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  if (run.status !== 0) throw new Error(`twin ${args[0]} failed: ${run.stderr}`);
  const rssKb = Number(/PEAK_RSS_KB=(\d+)/.exec(run.stderr)?.[1] ?? 0);
  return { seconds: (performance.now() - started) / 1000, peakRssMb: rssKb / 1024 };
}

try {
  const file = path.join(work, "export.json");
  await generateExport(file, { messages, chats: 500 });
  const imported = twin("import", file);
  process.stdout.write(
    `imported ${messages.toLocaleString("en-US")} messages in ${imported.seconds.toFixed(1)} s\n`,
  );
  fs.rmSync(file);

  const out = path.join(work, "dataset");
  // Without memory, as the figures before memory's default were: its search is a cost of its own.
  const built = twin("dataset", "--groups", "--since", "all", "--memory", "off", "--out", out);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8"));
  const c = manifest.counts;
  const n = (value: number) => Math.round(value).toLocaleString("en-US");
  process.stdout.write(
    `dataset from ${n(messages)} stored messages: ${n(c.sessions)} sessions, ${n(c.examples)} examples, ${c.chats} chats\n` +
      `  ${built.seconds.toFixed(1)} s (whole command, embedded server start included), ${n(c.sessions / built.seconds)} sessions/s, ` +
      `${n(messages / built.seconds)} messages/s, peak RSS ${built.peakRssMb.toFixed(0)} MB\n`,
  );
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
