#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-quantize from the source node-llama-cpp ships (llama/gitRelease.bundle),
# the same llama.cpp release its prebuilt binary was made from, into ~/.cache/twin/. Prints the folder holding both.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
package="$root/node_modules/node-llama-cpp/llama"
tag="$(node -p "require('$package/llama.cpp.info.json').tag")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/twin/llama.cpp-$tag"
bin="$cache/build/bin"
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-batched-bench" ] || [ ! -x "$bin/llama-quantize" ]; then
  rm -rf "$cache"
  git clone --quiet "$package/gitRelease.bundle" "$cache" >&2
  cmake -S "$cache" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
  cmake --build "$cache/build" --target llama-bench llama-batched-bench llama-quantize -j "$(nproc)" >&2
fi
echo "$bin"
