#!/usr/bin/env bash
# Writes the test model (SmolLM2-135M-Instruct, Q4_1) re-typed as TYPE (F16, Q8_0, Q4_0, ...) with
# llama.cpp's own llama-quantize, next to it in the model cache, and prints its path. F16 and Q8_0
# are what a full fine-tune exports (trainer export_type), so this measures serving one:
#   npm run bench:inference -- "$(bash bench/inference/retype-model.sh F16)"
set -euo pipefail
type="${1:?usage: retype-model.sh TYPE (F16, Q8_0, Q4_0, ...)}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$(bash "$root/bench/inference/build-llama-bench.sh")"
source="$(node "$root/scripts/test-model.mjs")"
target="${source%.Q4_1.gguf}.$type.gguf"
if [ ! -s "$target" ]; then
  "$bin/llama-quantize" --allow-requantize "$source" "$target.partial" "$type" >&2
  mv "$target.partial" "$target"
fi
echo "$target"
