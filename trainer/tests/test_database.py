"""Reading a dataset that `twin dataset` stored in PostgreSQL (what a worker on another machine does).

Runs against the server at TEST_DATABASE_URL (`.ci/run` sets it) in a database of its own.
"""

import json
from pathlib import Path

import pytest
from conftest import twin

from twin_trainer.data import FORMAT_VERSION, DatasetFormatError, load_dataset, read_examples

ROOT = Path(__file__).resolve().parents[2]
ENSIA = ROOT.parent / "shared/fixtures/telegram/ensia_group_export.json"


def test_a_stored_dataset_reads_back_as_the_files_say(database_url, tmp_path):
    twin(["import", str(ENSIA), "--owner", "7743393957"], database_url, tmp_path)
    twin(["dataset", "--groups", "--since", "all", "--gap", "180", "--out", str(tmp_path / "files")], database_url, tmp_path)
    manifest = json.loads((tmp_path / "files" / "manifest.json").read_text())

    stored = load_dataset(f"postgres:{manifest['datasetId']}", database_url)
    from_files = load_dataset(str(tmp_path / "files"))
    assert stored.manifest["datasetId"] == manifest["datasetId"] and stored.manifest["formatVersion"] == FORMAT_VERSION
    assert len(stored.train) > 0 and len(stored.train) == len(list(read_examples(tmp_path / "files" / "train.jsonl")))
    assert stored.train == from_files.train and stored.eval == from_files.eval

    with pytest.raises(DatasetFormatError, match="dataset 999999: not in the database"):
        load_dataset("postgres:999999", database_url)
    with pytest.raises(DatasetFormatError, match="set DATABASE_URL"):
        load_dataset(f"postgres:{manifest['datasetId']}", None)
    with pytest.raises(DatasetFormatError, match="expected postgres:<dataset id>"):
        load_dataset("postgres:latest", database_url)


@pytest.mark.unit
def test_connection_errors_hide_the_password():
    from twin_trainer.database import connect

    with pytest.raises(ConnectionError) as caught:
        connect("postgresql://twin:hunter2secret@127.0.0.1:1/nowhere?connect_timeout=2")
    assert "hunter2secret" not in str(caught.value) and "127.0.0.1:1/nowhere" in str(caught.value)
