import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from twin_trainer.data import describe_file

ROOT = Path(__file__).resolve().parents[2]


# `npm run test:unit` (the quick loop) runs the tests marked `unit`: `pytest -m unit`. A unit test
# reaches no database and loads or trains no model (a GGUF's header or tokenizer is fine); mark a
# whole file with `pytestmark = pytest.mark.unit`, or one test with `@pytest.mark.unit`.
NOT_UNIT_FIXTURES = {"database_url", "irc_dataset"}


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: a pure test, no database and no model trained (npm run test:unit)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = NOT_UNIT_FIXTURES & set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("unit") and used:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses {sorted(used)}: unmark it")


def queued_run(**fields):
    """A claimed run as the worker gets it from the queue, with `fields` changed (no database)."""
    from twin_trainer.run_queue import Run

    defaults = dict(
        id=1, dataset_id=1, method="lora", config={}, attempts=1, base_name="smol", base_gguf="/absent/smol.gguf",
        base_hf=None, base_fingerprint="f" * 64, base_model_id=1, base_architecture="llama",
    )  # fmt: skip
    return Run(**{**defaults, **fields})


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


IRC = ROOT.parent / "shared/fixtures/irc/ubuntu_irc_as_telegram_export.json"
TRAIN_EXAMPLES = 64


def owner_share(example: dict) -> float:
    trained = sum(len(s["text"]) for s in example["segments"] if s["train"])
    return trained / max(1, sum(len(s["text"]) for s in example["segments"]))


def twin_embedded(*args: str, data: Path) -> None:
    """The real CLI on an embedded PostgreSQL in `data`."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("TWIN_")}
    env |= {"TWIN_DATA_DIR": str(data), "TWIN_TZ": "UTC"}
    done = subprocess.run(["node", str(ROOT / "bin/twin.js"), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"twin {' '.join(args)} failed:\n{done.stderr[-2000:]}"


@pytest.fixture(scope="session")
def irc_dataset():
    # Not pytest's tmp_path: its parents are private to root, and the embedded PostgreSQL runs as
    # another user when tests run as root, so it needs a world-traversable folder.
    work = Path(tempfile.mkdtemp(prefix="twin-learning-"))
    os.chmod(work, 0o755)
    twin_embedded("import", str(IRC), data=work / "data")
    full = work / "full"
    twin_embedded("dataset", "--groups", "--since", "all", "--max-tokens", "256", "--loss", "owner", "--eval-fraction", "0.1",
         "--out", str(full), data=work / "data")
    dense = work / "dense"
    dense.mkdir()
    examples = [json.loads(line) for line in (full / "train.jsonl").read_text().splitlines()]
    chosen = sorted(examples, key=owner_share, reverse=True)[:TRAIN_EXAMPLES]
    (dense / "train.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in chosen))
    (dense / "eval.jsonl").write_bytes((full / "eval.jsonl").read_bytes())
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["files"]["train.jsonl"] = describe_file(dense / "train.jsonl")  # the subset, checked as a whole
    (dense / "manifest.json").write_text(json.dumps(manifest))
    yield dense
    shutil.rmtree(work, ignore_errors=True)
