#!/usr/bin/env node
// The CLI runs from the TypeScript sources through tsx: no build step between a clone and a run.
//
// node-llama-cpp runs every llama_decode on libuv's thread pool. When successive decodes land on
// different pool threads, ggml's compute threads run about 3× slower on 2 cores (bench/inference:
// one stream at 2 threads, 55 → 167 tokens/s). One pool thread keeps every decode on the same
// thread. libuv reads UV_THREADPOOL_SIZE when the pool is first used; this file is CommonJS
// (bin/package.json), which Node reads without the pool, so setting the size here still counts and
// the process the user starts is the one that works: no second process to outlive a kill -9.
// An explicit UV_THREADPOOL_SIZE is respected.
process.env.UV_THREADPOOL_SIZE ||= "1";

// V8 lets the heap grow to several times what its last full collection kept before collecting
// again. A dataset build holds one chat at a time (about 70 MB live at a million messages) but
// churns through every row, so its RSS reached 446 MB; growing by 20% at most it peaks at about
// 260 MB for about 5% more CPU (bench/import/pipeline.bench.ts). Read at each collection, so it
// applies although the heap is already set up.
require("node:v8").setFlagsFromString("--heap-growing-percent=20");

import("tsx/esm/api").then(({ register }) => {
  register();
  return import("../src/cli/main.ts");
});
