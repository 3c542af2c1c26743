#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-quantize from the source
# node-llama-cpp ships (llama/gitRelease.bundle), the release its prebuilt binary was made from, into
# ~/.cache/twin/, and prints the folder holding them.
#
# The tools run on the CPU kernels of node-llama-cpp's prebuilt binary: they are built without a CPU
# backend of their own (GGML_BACKEND_DL, as node-llama-cpp builds) and load the prebuilt's
# libggml-cpu-<variant>.so, linked into their folder, choosing the variant for this CPU as the engine
# does. So engine and reference differ only in the program driving llama.cpp, not in compiler,
# flags or kernels. (A -march=native build of the same source with GCC 12.2 died on its first AMX
# tile instruction on a Sapphire Rapids machine here, where the prebuilt's AMX kernels run: the
# compiler drops the tile configuration llama.cpp builds on the stack, ggml-org/llama.cpp#26954.)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
package="$root/node_modules/node-llama-cpp/llama"
platform="$(node -p "(process.platform === 'darwin' ? 'mac' : process.platform) + '-' + process.arch")"
kernels="$root/node_modules/@node-llama-cpp/$platform/bins/$platform"
tag="$(node -p "require('$package/llama.cpp.info.json').tag")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/twin/llama.cpp-$tag"
build="$cache/build-tools"
bin="$build/bin"
tools=(llama-bench llama-batched-bench llama-quantize)
built() { for tool in "${tools[@]}"; do [ -x "$bin/$tool" ] || return 1; done; }
if ! built; then
  [ -d "$cache/.git" ] || { rm -rf "$cache"; git clone --quiet "$package/gitRelease.bundle" "$cache" >&2; }
  cmake -S "$cache" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_CPU=OFF -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
  cmake --build "$build" --target "${tools[@]}" -j "$(nproc)" >&2
fi
# Linked on every run, so the kernels always are those of the node-llama-cpp installed now.
if ! compgen -G "$kernels/libggml-cpu-*" > /dev/null; then
  echo "build-llama-bench: no CPU kernels of node-llama-cpp's prebuilt binary in $kernels" >&2
  exit 1
fi
for library in "$kernels"/libggml-cpu-*; do ln -sf "$library" "$bin/"; done
echo "$bin"
