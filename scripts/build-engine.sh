#!/usr/bin/env bash
# Builds node-llama-cpp's llama.cpp binding for this machine from the llama.cpp source the package
# ships (llama/gitRelease.bundle: no download), with this CPU's own instruction set and OpenMP.
# node-llama-cpp then loads it instead of its prebuilt binary. Measured on 2 cores with the test
# model in F16 (a full fine-tune's export type): prompts evaluate 1.7x faster (bench/inference);
# with the Q4_1 base, no gain.
# It is tied to this CPU: do not copy it to another machine. Needs cmake and a C++ compiler
# (and the CUDA toolkit for `cuda`). Undo: npx --no node-llama-cpp source clear
#   npm run engine:build [-- cuda|vulkan]        (default: CPU only)
set -euo pipefail
cd "$(dirname "$0")/.."
npx --no node-llama-cpp source download --gpu "${1:-false}" --noUsageExample
