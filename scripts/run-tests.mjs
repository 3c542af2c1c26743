#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node's own test runner (TypeScript through tsx).
// Usage: node scripts/run-tests.mjs [path filter…]
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { ensureTestModel } from "./test-model.mjs";

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === "node_modules" ? [] : find(full);
    return name.endsWith(".test.ts") ? [full] : [];
  });
}

const filters = process.argv.slice(2);
const files = ["src", "test"]
  .flatMap(find)
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
// Tests that need a real GGUF model find it here (fetched once into the user's cache).
// One libuv pool thread, as bin/twin.js runs the product (see there why).
const env = {
  ...process.env,
  UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE || "1",
  // A CLI import in a test leaves no detached indexer behind to outlive its temporary folder;
  // test/memory-index.test.ts turns it back on where the background run is what it tests.
  TWIN_MEMORY_INDEX: process.env.TWIN_MEMORY_INDEX || "off",
  TEST_MODEL_GGUF: process.env.TEST_MODEL_GGUF || ensureTestModel(),
};
const result = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    "--test-concurrency=2",
    // A file may take 15 min at most: the slowest (a remote worker over SSH) takes 4-5 min alone and up to
    // 2.5x that beside another model-bound file on a loaded CI machine.
    "--test-timeout=900000",
    ...files,
  ],
  { stdio: "inherit", env },
);
process.exit(result.status ?? 1);
