/**
 * bench/import — `twin import` against the obvious baseline, on generated whole-account exports
 * of 250,000 and 1,000,000 messages across 500 chats, each run into a fresh database on one
 * embedded PostgreSQL. Prints messages/s and peak RSS of both, and their ratios.
 *
 *   npm run bench:import [-- 250000 1000000]
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { generateExport } from "./generate-export.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const sizes = process.argv.slice(2).map(Number).filter(Boolean);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bench-import-"));
fs.chmodSync(work, 0o755);
const server = await startEmbeddedPostgres({ dataDir: path.join(work, "db"), port: 0 });
const { user, password, host, port } = server.connection;
const urlOf = (db: string) => `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${db}`;

type Run = { mode: string; messages: number; seconds: number; peakRssMb: number };

async function measure(mode: "streaming" | "whole", file: string, n: number): Promise<Run> {
  const db = `bench_${mode}_${n}`;
  const admin = new pg.Client({ connectionString: urlOf("postgres") });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${db}`);
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  // The baseline may use all the heap it wants: it is measured, not limited.
  const flags = mode === "whole" ? ["--max-old-space-size=16384"] : [];
  const output = execFileSync(
    process.execPath,
    [...flags, "--import", "tsx", path.join(here, "run-import.ts"), mode, file, urlOf(db)],
    { encoding: "utf8", maxBuffer: 1 << 20 },
  );
  return JSON.parse(output.trim().split("\n").at(-1) as string);
}

const rows: string[] = [];
try {
  for (const n of sizes.length > 0 ? sizes : [250_000, 1_000_000]) {
    const file = path.join(work, `export-${n}.json`);
    const { bytes } = await generateExport(file, { messages: n, chats: 500 });
    process.stdout.write(`generated ${n.toLocaleString("en-US")} messages, ${(bytes / 1e6).toFixed(0)} MB\n`);
    const ours = await measure("streaming", file, n);
    const baseline = await measure("whole", file, n);
    for (const run of [ours, baseline]) {
      if (run.messages !== n) throw new Error(`${run.mode} imported ${run.messages} of ${n} messages`);
    }
    const rate = (run: Run) => run.messages / run.seconds;
    for (const run of [ours, baseline]) {
      rows.push(
        `${String(n).padStart(9)}  ${(run.mode === "streaming" ? "twin import" : "baseline JSON.parse").padEnd(20)} ${run.seconds
          .toFixed(1)
          .padStart(7)} s  ${Math.round(rate(run)).toLocaleString("en-US").padStart(9)} msg/s  ${run.peakRssMb
          .toFixed(0)
          .padStart(6)} MB peak RSS`,
      );
    }
    rows.push(
      `${String(n).padStart(9)}  ratio: ${(rate(ours) / rate(baseline)).toFixed(2)}x the baseline's speed, ${(baseline.peakRssMb / ours.peakRssMb).toFixed(1)}x less memory`,
    );
    fs.rmSync(file);
  }
  process.stdout.write(
    `\nmessages  importer             time        rate              memory\n${rows.join("\n")}\n`,
  );
} finally {
  await server.stop();
  fs.rmSync(work, { recursive: true, force: true });
}
