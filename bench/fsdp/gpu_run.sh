#!/usr/bin/env bash
# Issue 33's GPU session in one command (device machine: python3 with CUDA torch; wheels in .whl/
# for transformers/peft at the trainer's pins and liger-kernel): the kernel parity tests, then the
# throughput sweep — or, with `defaults`, the trainer's own defaults against the per-example
# reference on both document mixes. Everything lands in $OUT.
#   bash bench/fsdp/gpu_run.sh [sweep|defaults] [sizes] [sweep budget s]
set -uo pipefail
OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD/trainer" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
(cd trainer && timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tail -4 | tee "$OUT/pytest.txt")
if [ "${1:-sweep}" = defaults ]; then
  for mix in irc short; do
    timeout 170 python3 bench/fsdp/gpu_throughput.py --defaults-only --mix "$mix" --sizes "${2:-1.5b,7b}" --out "$OUT/$mix" 2>&1 \
      | grep -v -i "warn" | cut -c1-700
  done
else
  timeout 420 python3 bench/fsdp/gpu_throughput.py --sizes "${2:-1.5b,7b}" --budget "${3:-330}" --out "$OUT" 2>&1 \
    | grep -v -i "warn" | tee "$OUT/log" | cut -c1-700
fi
