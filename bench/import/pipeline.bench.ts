/**
 * bench/import/pipeline — `twin import` + `twin dataset --groups` on a fresh embedded database
 * against the original write-up's script (writeup_baseline.py: json.load → sessions → JSON file),
 * on one generated whole-account export, side by side and alternated (issue 32). Each round also
 * re-imports the same export and imports a newer one with 10% more messages into the same store.
 * Prints wall, CPU and peak RSS of each, PostgreSQL's CPU and memory apart, and the medians.
 *
 *   npm run bench:pipeline [-- --messages 1000000 --rounds 3]
 *   npm run bench:pipeline -- --flat 250000,1000000,4000000 --rounds 1   (twin's memory by size)
 *
 * Memory stays out: the full-text index is built in the background after an import and is not
 * counted here (TWIN_MEMORY_INDEX=off), and the dataset is built with --memory off.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { generateExport } from "./generate-export.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "3" },
    flat: { type: "string" },
    python: { type: "string", default: "python3" },
  },
});
const rounds = Number(values.rounds);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twin-bench-pipeline-"));
fs.chmodSync(work, 0o755); // as root, the embedded PostgreSQL runs as its own user

/** One command's figures: wall; CPU and peak RSS of its own processes (Node's, or Python's); PostgreSQL's apart. */
type Measured = {
  wall: number;
  cpu: number;
  rssMb: number;
  pgCpu: number;
  pgRssMb: number;
  /** A twin command's wall time by step, in seconds (see `stepsOf`). */
  steps?: Record<string, number>;
};

/**
 * A twin command's wall time by step, from its DEBUG output (ISO-timestamped lines): Node's start
 * until the database is asked for, the database's start, the job's own steps (its "time by step"
 * line, in ms), and from the job's end to the exit (the database's stop among it).
 */
function stepsOf(stderr: string, spawnedAt: number, exitedAt: number): Record<string, number> {
  const at = (pattern: RegExp) => {
    const line = stderr.split("\n").find((l) => pattern.test(l));
    const stamp = line ? /^(\S+Z) /.exec(line.trim())?.[1] : undefined;
    return stamp ? Date.parse(stamp) : undefined;
  };
  const asked = at(/twin:db:embedded (initialising|starting)/) ?? at(/twin:db:embedded/);
  const ready = at(/twin:db:embedded on the embedded PostgreSQL/);
  const stopping = at(/twin:db:embedded stopping/);
  const steps: Record<string, number> = {};
  if (asked && ready && stopping) {
    steps["node start, config"] = (asked - spawnedAt) / 1000;
    steps["database start"] = (ready - asked) / 1000;
    steps["database stop, exit"] = (exitedAt - stopping) / 1000;
  }
  const line = /time by step: (.*)$/m.exec(stderr)?.[1] ?? "";
  for (const [, step, ms] of line.matchAll(/([^,]+?) (\d+) ms/g))
    steps[(step as string).trim()] = Number(ms) / 1000;
  return steps;
}

const ticks = 100; // USER_HZ: /proc/stat counts CPU time in hundredths of a second
function busyTicks(): number {
  const fields = (fs.readFileSync("/proc/stat", "utf8").split("\n")[0] as string)
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields as number[];
  return (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
}

/** Resident memory of every postgres process now, in MB: the server's footprint while it works. */
function postgresRssMb(): number {
  let kb = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "postgres") continue;
      const status = fs.readFileSync(`/proc/${entry}/status`, "utf8");
      kb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return kb / 1024;
}

/**
 * Runs a command and measures it. A twin process reports its own CPU and VmHWM as it exits
 * (report-usage.mjs): GNU time's figures would include the embedded PostgreSQL, which twin
 * starts and waits for. The baseline is one plain process, measured by GNU time. PostgreSQL's CPU
 * is the machine's busy time over the run less the command's own: run on an otherwise quiet machine.
 */
async function measure(command: string[], env: NodeJS.ProcessEnv): Promise<Measured> {
  const timing = path.join(work, "time.txt");
  const usage = path.join(work, "usage.jsonl");
  fs.rmSync(usage, { force: true });
  const node = command[0] === process.execPath;
  if (node) {
    env = {
      ...env,
      BENCH_USAGE_FILE: usage,
      NODE_OPTIONS: `${env.NODE_OPTIONS ?? ""} --import ${path.join(here, "report-usage.mjs")}`.trim(),
    };
  }
  const before = busyTicks();
  let pgRssMb = 0;
  const poll = setInterval(() => {
    pgRssMb = Math.max(pgRssMb, postgresRssMb());
  }, 250);
  const spawnedAt = Date.now();
  const child = spawn("/usr/bin/time", ["-f", "%e %U %S %M", "-o", timing, ...command], {
    cwd: root,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  const exitedAt = Date.now();
  clearInterval(poll);
  if (code !== 0) throw new Error(`${command.join(" ")} exited ${code}: ${stderr.slice(-2000)}`);
  // GNU time's line comes last (an exit status note may precede it).
  const last = fs.readFileSync(timing, "utf8").trim().split("\n").at(-1) ?? "";
  const [wall, user, system, rssKb] = last.split(" ").map(Number);
  const busy = (busyTicks() - before) / ticks;
  let cpu = (user ?? 0) + (system ?? 0);
  let rssMb = (rssKb ?? 0) / 1024;
  if (node) {
    const processes = fs
      .readFileSync(usage, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { cpu: number; rssMb: number });
    cpu = processes.reduce((total, p) => total + p.cpu, 0);
    rssMb = Math.max(...processes.map((p) => p.rssMb));
  }
  return {
    wall: wall ?? 0,
    cpu,
    rssMb,
    pgCpu: Math.max(0, busy - cpu),
    pgRssMb,
    ...(node ? { steps: stepsOf(stderr, spawnedAt, exitedAt) } : {}),
  };
}

const sum = (a: Measured, b: Measured): Measured => ({
  wall: a.wall + b.wall,
  cpu: a.cpu + b.cpu,
  rssMb: Math.max(a.rssMb, b.rssMb),
  pgCpu: a.pgCpu + b.pgCpu,
  pgRssMb: Math.max(a.pgRssMb, b.pgRssMb),
});

function twinEnv(dataDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TWIN_DATA_DIR: dataDir,
    TWIN_TZ: "UTC",
    TWIN_MEMORY_INDEX: "off",
    DEBUG: "twin:import,twin:dataset,twin:db,twin:db:embedded",
  };
  delete env.DATABASE_URL;
  return env;
}
const twin = (...args: string[]) => [process.execPath, path.join(root, "bin/twin.js"), ...args];

async function twinRound(file: string, newer: string | undefined, round: number) {
  const dataDir = path.join(work, `data-${round}`);
  const env = twinEnv(dataDir);
  const imported = await measure(twin("import", file), env);
  const dataset = await measure(
    twin("dataset", "--groups", "--memory", "off", "--out", path.join(work, `dataset-${round}`)),
    env,
  );
  const reimport = newer ? await measure(twin("import", file), env) : undefined;
  const grown = newer ? await measure(twin("import", newer), env) : undefined;
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(path.join(work, `dataset-${round}`), { recursive: true, force: true });
  return { imported, dataset, total: sum(imported, dataset), reimport, grown };
}

async function baselineRound(file: string): Promise<Measured> {
  const out = path.join(work, "sessions.json");
  const measured = await measure(
    [values.python as string, path.join(here, "writeup_baseline.py"), file, out],
    process.env,
  );
  fs.rmSync(out, { force: true });
  return measured;
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
type Figure = Exclude<keyof Measured, "steps">;
const medianOf = (runs: Measured[], key: Figure) => median(runs.map((r) => r[key]));
const row = (label: string, runs: Measured[]) => {
  const m = (key: Figure) => medianOf(runs, key);
  return `${label.padEnd(34)} ${m("wall").toFixed(1).padStart(7)} s ${m("cpu").toFixed(1).padStart(7)} s ${m(
    "rssMb",
  )
    .toFixed(0)
    .padStart(
      7,
    )} MB   postgres ${m("pgCpu").toFixed(1).padStart(6)} s ${m("pgRssMb").toFixed(0).padStart(6)} MB`;
};
const header = `${"".padEnd(34)} ${"wall".padStart(9)} ${"CPU".padStart(9)} ${"peak RSS".padStart(10)}   (PostgreSQL: CPU, RSS)`;

async function compare(messages: number) {
  const file = path.join(work, "export.json");
  const newer = path.join(work, "export-newer.json");
  const { bytes } = await generateExport(file, { messages, chats: 500 });
  await generateExport(newer, { messages, chats: 500, grow: 1.1 });
  process.stdout.write(
    `generated ${messages.toLocaleString("en-US")} messages (${(bytes / 1e6).toFixed(0)} MB) and a newer export with 10% more\n`,
  );
  const baseline: Measured[] = [];
  const ours: Awaited<ReturnType<typeof twinRound>>[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternated, first one then the other first, so neither always runs on a warm page cache.
    const order = round % 2 === 0 ? ["twin", "baseline"] : ["baseline", "twin"];
    for (const which of order) {
      if (which === "baseline") baseline.push(await baselineRound(file));
      else ours.push(await twinRound(file, newer, round));
    }
    const last = ours.at(-1) as (typeof ours)[number];
    process.stdout.write(
      `round ${round + 1}: baseline ${baseline.at(-1)?.wall.toFixed(1)} s; twin import ${last.imported.wall.toFixed(1)} s + dataset ${last.dataset.wall.toFixed(1)} s, re-import ${last.reimport?.wall.toFixed(1)} s, newer ${last.grown?.wall.toFixed(1)} s\n`,
    );
  }
  const lines = [
    header,
    row("write-up script (Python)", baseline),
    row(
      "twin import + dataset --groups",
      ours.map((o) => o.total),
    ),
    row(
      "  twin import",
      ours.map((o) => o.imported),
    ),
    row(
      "  twin dataset --groups",
      ours.map((o) => o.dataset),
    ),
    row(
      "twin import, same export again",
      ours.map((o) => o.reimport as Measured),
    ),
    row(
      "twin import, newer export (+10%)",
      ours.map((o) => o.grown as Measured),
    ),
  ];
  const wall = median(ours.map((o) => o.total.wall)) / median(baseline.map((b) => b.wall));
  const rss =
    median(baseline.map((b) => b.rssMb)) /
    Math.max(...ours.flatMap((o) => [o.imported.rssMb, o.dataset.rssMb]));
  lines.push(
    `twin / baseline wall: ${wall.toFixed(2)}x; baseline peak RSS / twin's largest Node process: ${rss.toFixed(1)}x (medians of ${rounds} alternated rounds)`,
  );
  lines.push("", "time by step, medians (s):");
  for (const [label, runs] of [
    ["import", ours.map((o) => o.imported)],
    ["dataset --groups", ours.map((o) => o.dataset)],
    ["import, same export again", ours.map((o) => o.reimport as Measured)],
  ] as const) {
    const names = [...new Set(runs.flatMap((r) => Object.keys(r.steps ?? {})))];
    const parts = names.map((name) => `${name} ${median(runs.map((r) => r.steps?.[name] ?? 0)).toFixed(2)}`);
    lines.push(`  ${label}: ${parts.join(", ")}`);
  }
  // Issue 32's bar, on medians.
  const totalWall = medianOf(
    ours.map((o) => o.total),
    "wall",
  );
  const baselineWall = medianOf(baseline, "wall");
  const importWall = medianOf(
    ours.map((o) => o.imported),
    "wall",
  );
  const reimports = ours.map((o) => o.reimport as Measured);
  const reimportWall = medianOf(reimports, "wall");
  const rssBar = medianOf(baseline, "rssMb") / 10;
  const largestRss = Math.max(
    ...[
      ours.map((o) => o.imported),
      ours.map((o) => o.dataset),
      reimports,
      ours.map((o) => o.grown as Measured),
    ].map((runs) => medianOf(runs, "rssMb")),
  );
  const bars: [string, boolean][] = [
    [
      `import + dataset ${totalWall.toFixed(1)} s < baseline ${baselineWall.toFixed(1)} s`,
      totalWall < baselineWall,
    ],
    [`import + dataset ${totalWall.toFixed(1)} s <= 34 s`, totalWall <= 34],
    [
      `largest Node peak RSS ${largestRss.toFixed(0)} MB <= baseline's / 10 = ${rssBar.toFixed(0)} MB`,
      largestRss <= rssBar,
    ],
    [`import ${importWall.toFixed(1)} s <= 15 s`, importWall <= 15],
    [`re-import ${reimportWall.toFixed(1)} s <= 10 s`, reimportWall <= 10],
  ];
  lines.push("", "bar:", ...bars.map(([text, met]) => `  ${met ? "met   " : "MISSED"} ${text}`));
  process.stdout.write(`\n${lines.join("\n")}\n`);
  fs.rmSync(file);
  fs.rmSync(newer);
}

async function flat(sizes: number[]) {
  const lines = [header];
  for (const messages of sizes) {
    const file = path.join(work, "export.json");
    const { bytes } = await generateExport(file, { messages, chats: 500 });
    const runs = [];
    for (let round = 0; round < rounds; round++) runs.push(await twinRound(file, undefined, round));
    lines.push(
      row(
        `${messages.toLocaleString("en-US")} messages (${(bytes / 1e6).toFixed(0)} MB): import`,
        runs.map((r) => r.imported),
      ),
    );
    lines.push(
      row(
        `${"".padEnd(messages.toLocaleString("en-US").length)}            dataset`,
        runs.map((r) => r.dataset),
      ),
    );
    fs.rmSync(file);
  }
  process.stdout.write(`\n${lines.join("\n")}\n`);
}

try {
  if (values.flat) await flat(values.flat.split(",").map(Number));
  else await compare(Number(values.messages));
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
