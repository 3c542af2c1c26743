#!/usr/bin/env bash
# Does memory help? Issue 31's measurement on the IRC fixture: two datasets that differ only in
# memory (`twin dataset --memory off|on`: ActionParsnip's turns trained, the latest fifth of the
# sessions held out, the fixture's own earlier days as memory), a LoRA on SmolLM2-135M per arm and
# seed with the same number of learnt tokens, then `twin eval --compare-memory`: held-out loss on
# message text with paired bootstrap 95% intervals over sessions, the same adapter served with and
# without memory, the "knows the context" probe, and a canary planted in the history store of a
# second chat and asked for from the channel with memory on.
#   bash bench/memory/compare.sh [trained tokens per run] [turns] [seeds] [probes]
#   (defaults: 16000 tokens — about half an epoch of the owner's turns — 8 generated turns, 2 seeds,
#   10 canary probes per model; the loss figures use every held-out turn, the generations only
#   feed the report's style table and the canary's replies)
# Runs on a fresh embedded database in a scratch folder (TWIN_DATA_DIR to reuse one: finished
# steps are skipped); about 20 minutes per run on 2 cores at the default budget.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET="${1:-16000}"
TURNS="${2:-8}"
SEEDS="${3:-2}"
PROBES="${4:-10}"
export TWIN_DATA_DIR="${TWIN_DATA_DIR:-$(mktemp -d /tmp/twin-memory-bench-XXXXXX)}"
chmod 755 "$TWIN_DATA_DIR"
unset DATABASE_URL TWIN_MEMORY TWIN_MEMORY_WINDOWS
export TWIN_TZ=UTC TWIN_CONTEXT_SIZE="${TWIN_CONTEXT_SIZE:-1024}" TWIN_MAX_REPLY_TOKENS="${TWIN_MAX_REPLY_TOKENS:-64}"
export TWIN_MEMORY_INDEX=off # the memory dataset brings the index up to date itself
IRC=../shared/fixtures/irc/ubuntu_irc_as_telegram_export.json
twin() { node bin/twin.js "$@"; }
echo "data: $TWIN_DATA_DIR; budget $BUDGET trained tokens per run, $SEEDS seeds, $TURNS generated turns, $PROBES probes"

if [ ! -f "$TWIN_DATA_DIR/datasets" ]; then
  twin import "$IRC" >/dev/null
  # A second chat of the same owner, where the canary goes: memory must never carry it into the channel.
  node bench/memory/canary-chat.mjs "$IRC" "$TWIN_DATA_DIR/canary-chat.json"
  twin import "$TWIN_DATA_DIR/canary-chat.json" >/dev/null
  options=(--groups --since all --loss owner --eval-fraction 0.2)
  plain=$(twin dataset "${options[@]}" --memory off | sed -n 's/^dataset \([0-9]*\):.*/\1/p')
  memory=$(twin dataset "${options[@]}" --memory on | tee /dev/stderr | sed -n 's/^dataset \([0-9]*\):.*/\1/p')
  echo "$plain $memory" >"$TWIN_DATA_DIR/datasets"
  twin model add "$(node scripts/test-model.mjs)" >/dev/null
fi
read -r plain memory <"$TWIN_DATA_DIR/datasets"
echo "datasets: $plain without memory, $memory with"

# One run per arm and seed, the same learnt-token budget and row length for all: memory takes room
# in each row, so the memory arm takes more rows (steps) to learn as many tokens.
for seed in $(seq 0 $((SEEDS - 1))); do
  for dataset in "$plain" "$memory"; do
    marker="$TWIN_DATA_DIR/run-$dataset-$seed"
    [ -f "$marker" ] && continue
    echo "training on dataset $dataset, seed $seed"
    /usr/bin/time -f "%e s" node bin/twin.js train --dataset "$dataset" --yes --set max_trained_tokens="$BUDGET" \
      --set tokens_per_batch=2048 --set seed="$seed" --set eval_every=0 --set save_every=100000 --set max_eval_examples=20 | tail -2
    touch "$marker"
  done
done
# A fresh database's adapters are numbered in training order: 1 and 2 for seed 0, and so on.
adapters=$(for id in $(seq 1 $((2 * SEEDS))); do printf -- '--adapter %s ' "$id"; done)
# shellcheck disable=SC2086
time twin eval --compare-memory $adapters --turns "$TURNS" --probes "$PROBES" --memory-canary 5550001 --out "$TWIN_DATA_DIR/report"
sed -n '/^## Memory/,/^## /p' "$TWIN_DATA_DIR/report/report.md"
