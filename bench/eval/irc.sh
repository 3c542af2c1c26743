#!/usr/bin/env bash
# The bar of `twin eval` on the IRC fixture: a LoRA run on SmolLM2-135M (CPU) against the base
# alone and the base with real history, over held-out turns of ActionParsnip. Prints the report.
#   bash bench/eval/irc.sh [steps] [turns]        (defaults: 150 steps, 200 turns)
# Runs on a fresh embedded database in a scratch folder; takes about an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS="${1:-150}"
TURNS="${2:-200}"
export TWIN_DATA_DIR="${TWIN_DATA_DIR:-$(mktemp -d /tmp/twin-eval-bench-XXXXXX)}"
chmod 755 "$TWIN_DATA_DIR"
unset DATABASE_URL
export TWIN_TZ=UTC TWIN_CONTEXT_SIZE="${TWIN_CONTEXT_SIZE:-1024}" TWIN_MAX_REPLY_TOKENS="${TWIN_MAX_REPLY_TOKENS:-64}"
twin() { node bin/twin.js "$@"; }
twin import ../shared/fixtures/irc/ubuntu_irc_as_telegram_export.json >/dev/null
# A fifth of the sessions held out: the owner wrote ~5% of the channel, and the bar wants ≥200 of their turns.
twin dataset --groups --since all --loss owner --eval-fraction 0.2 --canary | tail -3
twin model add "$(node scripts/test-model.mjs)" >/dev/null
time twin train --yes --set max_steps="$STEPS" --set eval_every=50 --set save_every=50 --set max_eval_examples=40
time twin eval --turns "$TURNS" --out "$TWIN_DATA_DIR/report"
sed -n '1,30p' "$TWIN_DATA_DIR/report/report.md"
