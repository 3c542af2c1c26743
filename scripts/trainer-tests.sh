#!/usr/bin/env bash
# Runs the trainer's tests in its Python environment (set up first when missing or stale).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-trainer.sh
cd trainer
TEST_MODEL_GGUF="${TEST_MODEL_GGUF:-$(node ../scripts/test-model.mjs)}" exec .venv/bin/python -m pytest -q "$@"
