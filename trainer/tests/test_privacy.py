"""Nothing the trainer prints shows a connection string or a token, and what it writes (adapters,
checkpoints, metrics, reports: people's messages) is readable by its user alone."""

import os
import stat
import subprocess
import sys

import pytest

from conftest import smollm2_gguf
from test_train import write_dataset
from twin_trainer.privacy import private_dir, redact

PASSWORD = "Sup3r-Secret-PW"


def run(args, env_extra, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | env_extra
    return subprocess.run([sys.executable, "-m", "twin_trainer", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.mark.unit
def test_the_worker_never_prints_the_database_password_whatever_is_wrong_with_the_url():
    for url in [
        f"postgresql://alice:{PASSWORD}@[::1/db",  # unparseable: psycopg raises ProgrammingError
        f"postgresql://alice:{PASSWORD}@127.0.0.1:1/db",  # refused: OperationalError
        f"host=127.0.0.1 port=1 user=alice password={PASSWORD}",  # libpq's keyword form
        f"postgresql://alice:{PASSWORD}@127.0.0.1:1/db?sslmode=nonsense",  # a bad option
    ]:
        result = run(["worker", "--once"], {"DATABASE_URL": url})
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert PASSWORD not in output, output
        assert "Traceback" not in output, output
        assert "cannot connect to PostgreSQL" in output, output


@pytest.mark.unit
def test_an_uncaught_error_s_traceback_is_redacted_too():
    code = (
        "from twin_trainer.privacy import guard_output; guard_output(); "
        f"raise RuntimeError('could not reach postgres://bob:{PASSWORD}@db.internal/twin')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError" in result.stderr
    assert PASSWORD not in result.stderr and "bob" not in result.stderr


@pytest.mark.unit
def test_redact_covers_urls_keywords_and_the_known_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{PASSWORD}@h/db")
    text = redact(
        f"a postgresql://u:{PASSWORD}@h:5432/db b https://user:tok@example.org/x c password='{PASSWORD}' "
        f"d PASSWD=x1y2 e token hf_abcdefghijklmnop f bare {PASSWORD} g https://example.org/plain"
    )
    for secret in [PASSWORD, "user:tok", "x1y2", "hf_abcdefghijklmnop"]:
        assert secret not in text, text
    assert "https://example.org/plain" in text, "a URL without credentials is left as it is"


@pytest.mark.unit
def test_private_dir_narrows_a_folder_that_already_existed(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert private_dir(folder) == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(private_dir(tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_a_training_run_writes_its_adapter_and_checkpoints_for_its_user_alone(tmp_path):
    write_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o755)
    os.chmod(runs, 0o755)
    output = runs / "first"
    output.mkdir(mode=0o755)  # already there, world-readable: narrowed
    os.chmod(output, 0o755)
    os.umask(0o022)  # the caller's usual umask: the trainer sets its own
    result = run(
        ["train", "--set", f"base={smollm2_gguf()}", "--set", f"dataset={tmp_path / 'data'}", "--set",
         f"output={output}", "--set", "max_steps=2", "--set", "tokens_per_batch=64", "--set", "eval_every=0",
         "--set", "save_every=1"],
        {},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (output / "adapter").is_dir()
    paths = [output, *output.rglob("*")]
    assert len(paths) > 5
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path.relative_to(tmp_path)}: {oct(mode)}"
