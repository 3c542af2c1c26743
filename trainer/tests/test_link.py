"""The remote worker's link (stdin: secrets, then commands) and what a remote machine's Python lacks."""

from __future__ import annotations

import io
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
