import os
from pathlib import Path

import pytest


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF, fetched into the cache by scripts/test-model.mjs (from PyPI)."""
    explicit = os.environ.get("TEST_MODEL_GGUF")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = Path(explicit) if explicit else cache / "twin" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `node scripts/test-model.mjs` from the repository root first")
    return path


@pytest.fixture(scope="session")
def tokenizer():
    from twin_trainer.model import gguf_tokenizer

    return gguf_tokenizer(smollm2_gguf())  # as load_base builds it
