#!/usr/bin/env bash
# Sets up the trainer's Python environment (trainer/.venv, pinned in trainer/pyproject.toml) when it
# is missing or stale, then runs the trainer's tests. torch==2.13.0 is the CPU build on this machine.
set -euo pipefail
cd "$(dirname "$0")/../trainer"
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, transformers, peft, gguf" # fails loudly if the install did not complete
  touch .venv/.installed
fi
TEST_MODEL_GGUF="${TEST_MODEL_GGUF:-$(node ../scripts/test-model.mjs)}" exec .venv/bin/python -m pytest -q "$@"
