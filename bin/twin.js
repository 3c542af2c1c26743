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

import("tsx/esm/api").then(({ register }) => {
  register();
  return import("../src/cli/main.ts");
});
