/**
 * Loaded into each measured twin process (NODE_OPTIONS=--import): on exit, appends the process's
 * own CPU seconds and peak RSS (VmHWM: this process alone, not the PostgreSQL it may have started
 * and waited for) to $BENCH_USAGE_FILE as one JSON line.
 */
import fs from "node:fs";

const file = process.env.BENCH_USAGE_FILE;
if (file) {
  process.on("exit", () => {
    const usage = process.resourceUsage();
    const hwm = /VmHWM:\s+(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1];
    const line = {
      pid: process.pid,
      cpu: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
      rssMb: Number(hwm ?? usage.maxRSS) / 1024,
    };
    fs.appendFileSync(file, `${JSON.stringify(line)}\n`);
  });
}
