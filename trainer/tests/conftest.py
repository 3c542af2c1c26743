import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture(scope="module")
def database_url():
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL is not set (.ci/run sets it)")
    import psycopg

    name = f"twin_trainer_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def twin(args, url, tmp_path):
    """Runs the twin CLI against `url` (migrations included), as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env |= {"DATABASE_URL": url, "TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_TZ": "UTC"}
    return subprocess.run(["node", str(ROOT / "bin/twin.js"), *args], env=env, check=True, capture_output=True, text=True)
