#!/usr/bin/env bash
# Creates the trainer's Python environment (trainer/.venv, pinned in trainer/pyproject.toml) when it
# is missing or older than pyproject.toml. The app starts its local training worker from it.
# torch==2.13.0 is the CPU build on the development machines; the trainer image installs CUDA's.
set -euo pipefail
cd "$(dirname "$0")/../trainer"
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setting up the trainer's Python environment in trainer/.venv…" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, transformers, peft, gguf, matplotlib" # fails loudly if the install did not complete
  touch .venv/.installed
fi
