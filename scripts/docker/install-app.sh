#!/usr/bin/env bash
# Installs the app's production dependencies in the current folder and prunes them to what one
# image needs. The Dockerfile RUNs exactly this script, and test/container.test.ts runs it in a
# scratch folder, so what the test checks is what the image holds.
#
# Usage: scripts/docker/install-app.sh cpu|cuda
#   cpu   keeps node-llama-cpp's CPU build for this machine's architecture only.
#   cuda  (x64 only) keeps the CPU build and the CUDA build for the CUDA major version in
#         CUDA_MAJOR (default 12, the Dockerfile passes its base image's):
#           12  @node-llama-cpp/linux-x64-cuda-ext holds the CUDA 12 backend (loaded as a
#               fallback); linux-x64-cuda's own libggml-cuda.so links CUDA 13 and cannot load.
#           13  linux-x64-cuda alone; the CUDA 12 extension package goes.
# Everything else goes: Vulkan, ARM (or x64 on ARM), other platforms' prebuilt addons,
# and node-llama-cpp's llama.cpp source bundle (only used to build from source, which an image
# never does: the app calls getLlama with build: "never").
set -euo pipefail
shopt -s nullglob

target="${1:-}"
case "$target" in
  cpu | cuda) ;;
  *)
    echo "usage: $0 cpu|cuda" >&2
    exit 2
    ;;
esac

[ -f package-lock.json ] || {
  echo "$0: no package-lock.json in $(pwd)" >&2
  exit 1
}

# node-llama-cpp's postinstall would look for (or build) a binary; the prebuilt packages suffice.
export NODE_LLAMA_CPP_POSTINSTALL=skip
npm ci --omit=dev --no-audit --no-fund --loglevel=error

nm=node_modules
size_kb() { du -sk "$1" | cut -f1; }
before=$(size_kb "$nm")

arch=$(node -p process.arch)
case "$arch" in
  x64) cpu_pkg=linux-x64 ;;
  arm64) cpu_pkg=linux-arm64 ;;
  arm) cpu_pkg=linux-armv7l ;;
  *)
    echo "$0: no node-llama-cpp prebuilt binary for $arch" >&2
    exit 1
    ;;
esac

keep=("$cpu_pkg")
if [ "$target" = cuda ]; then
  if [ "$arch" != x64 ]; then
    echo "$0: the cuda target is x64 only (node-llama-cpp ships no CUDA build for $arch)" >&2
    exit 1
  fi
  cuda_major="${CUDA_MAJOR:-12}"
  case "$cuda_major" in
    12)
      keep+=(linux-x64-cuda linux-x64-cuda-ext)
      # Needs libcudart.so.13: dead weight beside a CUDA 12 runtime (the -ext fallback loads).
      rm -f "$nm/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so"
      ;;
    13) keep+=(linux-x64-cuda) ;;
    *)
      echo "$0: CUDA_MAJOR must be 12 or 13, not $cuda_major" >&2
      exit 1
      ;;
  esac
fi

# node-llama-cpp's prebuilt binaries: one package per platform and GPU backend.
for dir in "$nm"/@node-llama-cpp/*/; do
  name=$(basename "$dir")
  if [[ " ${keep[*]} " != *" $name "* ]]; then rm -rf "$dir"; fi
done
for name in "${keep[@]}"; do
  [ -d "$nm/@node-llama-cpp/$name" ] || {
    echo "$0: npm ci installed no @node-llama-cpp/$name" >&2
    exit 1
  }
done

# llama.cpp's sources and build tooling (gitRelease.bundle alone is ~34 MB). Kept: the grammars
# and the small JSON files node-llama-cpp reads at run time.
llama="$nm/node-llama-cpp/llama"
rm -rf "$llama/gitRelease.bundle" "$llama/addon" "$llama/cmake" "$llama/toolchains" \
  "$llama/xpack" "$llama/patches" "$llama/profiles" "$llama/CMakeLists.txt"

# node-gyp-build prebuilds (bufferutil, utf-8-validate, …): keep linux-<arch> only.
while IFS= read -r -d '' prebuilds; do
  for dir in "$prebuilds"/*/; do
    name=$(basename "$dir")
    case "$name" in
      "linux-$arch" | "linux-$arch+"* | linux-*"+$arch" | linux-*"+$arch+"*) ;;
      *) rm -rf "$dir" ;;
    esac
  done
done < <(find "$nm" -type d -name prebuilds -print0)

after=$(size_kb "$nm")
echo "install-app ($target, $arch): node_modules ${before} KiB before pruning, ${after} KiB after"
