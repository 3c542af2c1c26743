#!/usr/bin/env bash
# Writes the 7B-shaped synthetic model (synthetic_model.py: Qwen2.5-7B's layer shapes, 4 layers,
# random weights) quantized to TYPE (default Q4_K_M, the usual type of a served 7B) with llama.cpp's
# own llama-quantize, into the model cache, and prints its path. For speed measurements only.
# Needs 3.3 GB free while it runs (the F16 file is removed after quantizing).
#   npm run bench:inference -- --deployment-model "$(bash bench/inference/synthetic-model.sh)"
set -euo pipefail
type="${1:-Q4_K_M}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/scripts/setup-trainer.sh" # its Python has the pinned gguf library
source="$(node "$root/scripts/test-model.mjs")"
target="$(dirname "$source")/synthetic-qwen2.5-7b-shapes-4-layers.$type.gguf"
if [ ! -s "$target" ]; then
  bin="$(bash "$root/bench/inference/build-llama-bench.sh")"
  "$root/trainer/.venv/bin/python" "$root/bench/inference/synthetic_model.py" "$source" "$target.f16"
  "$bin/llama-quantize" "$target.f16" "$target.partial" "$type" > "$target.log" 2>&1 ||
    { tail -n 20 "$target.log" >&2; exit 1; }
  rm -f "$target.log" "$target.f16"
  mv "$target.partial" "$target"
fi
echo "$target"
