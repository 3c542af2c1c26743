"""The remote worker's link (stdin: secrets, then commands) and what a remote machine's Python lacks."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import threading

import pytest

from twin_trainer import run_queue
from twin_trainer.link import Link, LinkError, read_secrets

pytestmark = pytest.mark.unit


def test_secrets_come_first_as_json_and_a_bad_line_is_refused_saying_why():
    secrets = read_secrets(io.StringIO('{"database_url": "postgres://r:p@127.0.0.1:1/db", "hf_token": null}\nstop\n'))
    assert secrets["database_url"].startswith("postgres://")
    with pytest.raises(LinkError, match="closed before the secrets"):
        read_secrets(io.StringIO(""))
    with pytest.raises(LinkError, match="not JSON"):
        read_secrets(io.StringIO("postgres://r:p@h/db\n"))
    with pytest.raises(LinkError, match="database_url"):
        read_secrets(io.StringIO('{"hf_token": "x"}\n'))


def test_stop_lines_stop_the_worker_and_the_end_of_input_means_the_link_is_gone():
    calls: list[str] = []
    lost = threading.Event()
    link = Link(io.StringIO("noise\nstop\n"), on_stop=lambda: calls.append("stop"), on_lost=lost.set)
    link.start()
    assert lost.wait(5)
    assert calls == ["stop"]


def test_a_checkpoint_unpacks_where_python_has_no_extraction_filters(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "adapter.bin").write_bytes(b"weights")
    data = run_queue.tar_folder(folder)
    monkeypatch.delattr(tarfile, "data_filter")  # Python 3.11.0-3.11.3, Debian 12's 3.11.2
    out = tmp_path / "out"
    out.mkdir()
    run_queue.untar_into(data, out)
    assert (out / "checkpoint-2" / "adapter.bin").read_bytes() == b"weights"

    escaping = io.BytesIO()
    with tarfile.open(fileobj=escaping, mode="w") as archive:
        member = tarfile.TarInfo("../escaped")
        member.size = 1
        archive.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="not a plain file inside"):
        run_queue.untar_into(escaping.getvalue(), out)
    assert not (tmp_path / "escaped").exists()


def test_the_links_secrets_stay_in_the_worker_process_and_reach_no_child_it_starts():
    """A child inherits os.environ (matplotlib runs fc-list the first time it builds its font cache):
    the link's secrets are kept out of it, yet the worker reads them and its output guard redacts them."""
    script = """
import subprocess, sys
from twin_trainer import environment
from twin_trainer.privacy import redact
environment.adopt_link_secrets("postgres://twin_worker_7:s3cretpass@127.0.0.1:5/db", "hf_linkToken123")
print(environment.database_url(), environment.hf_token())
print("redacted" if redact("pw s3cretpass tok hf_linkToken123") == "pw [redacted] tok [redacted]" else "not redacted")
print(subprocess.run(["env"], capture_output=True, text=True, check=True).stdout)
print("for a distributed launch:", environment.environment_with_secrets()["DATABASE_URL"])
"""
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HF_TOKEN")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=clean).stdout
    first, redaction, *rest = out.splitlines()
    assert first == "postgres://twin_worker_7:s3cretpass@127.0.0.1:5/db hf_linkToken123"
    assert redaction == "redacted"
    child = "\n".join(rest)
    env = child.split("for a distributed launch:")[0]
    assert "s3cretpass" not in env and "twin_worker_" not in env and "hf_linkToken123" not in env
    assert "for a distributed launch: postgres://twin_worker_7:s3cretpass@127.0.0.1:5/db" in child
