#!/usr/bin/env node
// The CLI runs from the TypeScript sources through tsx: no build step between a clone and a run.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { register } from "tsx/esm/api";

// node-llama-cpp runs every llama_decode on libuv's thread pool. When successive decodes land on
// different pool threads, ggml's compute threads run about 3× slower on 2 cores (bench/inference:
// one stream at 2 threads, 55 → 167 tokens/s). One pool thread keeps every decode on the same
// thread. Node sizes its pool before any of our code runs, so the CLI starts itself once more
// with the size set (an explicit UV_THREADPOOL_SIZE is respected).
if (!process.env.UV_THREADPOOL_SIZE) {
  const child = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: "inherit", env: { ...process.env, UV_THREADPOOL_SIZE: "1" } },
  );
  // Ctrl+C reaches the child through the terminal's process group; other signals are passed on.
  process.on("SIGINT", () => undefined);
  for (const signal of ["SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => {
    if (signal) {
      // Die of the same signal, so whoever started us sees what happened.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  register();
  await import("../src/cli/main.ts");
}
