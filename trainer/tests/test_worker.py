"""The worker and its queue against a real PostgreSQL (TEST_DATABASE_URL, a database of its own)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from conftest import ROOT, queued_run, smollm2_gguf, twin

from twin_trainer import run_queue
from twin_trainer.charts import loss_chart

ENSIA = ROOT.parent / "shared/fixtures/telegram/ensia_group_export.json"


@pytest.fixture(scope="module")
def store(database_url, tmp_path_factory):
    """A migrated database with the fixture imported, a dataset built and the test model registered."""
    folder = tmp_path_factory.mktemp("store")
    twin(["import", str(ENSIA), "--owner", "7743393957"], database_url, folder)
    twin(["dataset", "--groups", "--since", "all", "--gap", "180", "--max-tokens", "400"], database_url, folder)
    twin(["model", "add", str(smollm2_gguf())], database_url, folder)
    with psycopg.connect(database_url, autocommit=True) as connection:
        dataset = connection.execute("SELECT max(id) FROM datasets WHERE status = 'ready'").fetchone()[0]
        base = connection.execute("SELECT id FROM base_models WHERE is_default").fetchone()[0]
    return {"url": database_url, "dataset": dataset, "base": base}


def queue_run(url, store, overrides=None, file="smollm2-135m-lora-cpu.yaml"):
    config = {"file": file, "set": overrides or {}}
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(
            "INSERT INTO training_runs (dataset_id, base_model_id, config) VALUES (%s, %s, %s) RETURNING id",
            (store["dataset"], store["base"], psycopg.types.json.Jsonb(config)),
        ).fetchone()[0]


def test_two_workers_never_take_the_same_run(store):
    runs = {queue_run(store["url"], store) for _ in range(20)}
    taken: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(name):
        with psycopg.connect(store["url"], autocommit=True) as connection:
            while (run := run_queue.claim(connection, name)) is not None:
                with lock:
                    taken.append((name, run.id))

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [run_id for _, run_id in taken if run_id in runs]
    assert sorted(claimed) == sorted(runs), "every run claimed exactly once"
    assert len({name for name, _ in taken}) > 1, "the claims were spread over several workers"
    with psycopg.connect(store["url"], autocommit=True) as connection:
        connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE status = 'running'")


def test_a_silent_worker_s_run_is_requeued_then_failed_after_three_attempts(store):
    run_id = queue_run(store["url"], store)
    with psycopg.connect(store["url"], autocommit=True) as connection:
        for attempt in range(1, run_queue.MAX_ATTEMPTS + 1):
            run = run_queue.claim(connection, f"dead-{attempt}")
            assert run is not None and run.id == run_id and run.attempts == attempt, f"attempt {attempt} claims the run"
            assert run_queue.requeue_stale(connection, 60) == [], "a fresh heartbeat is not stale"
            connection.execute("UPDATE training_runs SET heartbeat_at = now() - interval '2 minutes' WHERE id = %s", (run_id,))
            expected = "failed" if attempt == run_queue.MAX_ATTEMPTS else "queued"
            assert run_queue.requeue_stale(connection, 60) == [(run_id, f"dead-{attempt}", expected)]
        status, error = connection.execute("SELECT status, error FROM training_runs WHERE id = %s", (run_id,)).fetchone()
    assert status == "failed" and "dead-3 stopped sending heartbeats 3 times" in error


def test_files_round_trip_in_chunks_and_only_the_latest_checkpoint_stays(store, monkeypatch):
    monkeypatch.setattr(run_queue, "CHUNK_BYTES", 1000)
    run_id = queue_run(store["url"], store)
    payload = os.urandom(4500)
    with psycopg.connect(store["url"], autocommit=True) as connection:
        first = run_queue.put_file(connection, run_id, "checkpoint", payload, step=2)
        assert connection.execute("SELECT count(*) FROM training_file_chunks WHERE file_id = %s", (first,)).fetchone()[0] == 5
        second = run_queue.put_file(connection, run_id, "checkpoint", payload[::-1], step=4)
        assert run_queue.latest_checkpoint(connection, run_id) == (second, 4)
        assert run_queue.get_file(connection, second) == payload[::-1]
        assert connection.execute("SELECT count(*) FROM training_files WHERE id = %s", (first,)).fetchone()[0] == 0
        connection.execute("UPDATE training_file_chunks SET data = 'x' WHERE file_id = %s AND ordinal = 2", (second,))
        with pytest.raises(ValueError, match="damaged"):
            run_queue.get_file(connection, second)


@pytest.mark.unit
def test_the_loss_chart_is_a_real_svg_and_png():
    svg, png = loss_chart([(1, 3.0), (2, 2.5), (3, 2.2)], [(2, 2.9), (3, 2.6)], title="Run 1", base_eval_loss=3.1)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, f"a PNG of {len(png)} bytes"
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"held-out loss" in svg


def start_worker(url, workdir, *flags, env=None):
    env = {**os.environ, "DATABASE_URL": url, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "twin_trainer", "worker", "--until-idle", "--heartbeat-seconds", "0.5",
         "--stale-seconds", "3", "--workdir", str(workdir), *flags],
        cwd=ROOT / "trainer", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_for(check, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if (value := check()) is not None:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_a_failed_run_keeps_its_output_and_traceback_in_its_log_and_stdout_carries_events_alone(store, tmp_path):
    with psycopg.connect(store["url"], autocommit=True) as connection:
        connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE status IN ('queued', 'running')")
    run_id = queue_run(store["url"], store, {"tokens_per_batch": "64", "max_steps": "2"})  # every example is longer
    worker = start_worker(store["url"], tmp_path / "w")
    output, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, output
    with psycopg.connect(store["url"], autocommit=True) as connection:
        status, error = connection.execute("SELECT status, error FROM training_runs WHERE id = %s", (run_id,)).fetchone()
        events = connection.execute(
            "SELECT event, data FROM training_events WHERE run_id = %s ORDER BY id", (run_id,)
        ).fetchall()
    assert status == "failed" and "exceed tokens_per_batch=64" in error, error
    names = [name for name, _ in events]
    log = [data["line"] for name, data in events if name == "log_line"]
    assert "Traceback (most recent call last):" in log, f"the traceback is in the run's log: {log}"
    assert any("exceed tokens_per_batch=64" in line for line in log), log
    assert names.index("failed") > max(i for i, name in enumerate(names) if name == "log_line"), (
        "the log is stored before the run is marked failed, so a follower finds it complete"
    )
    phases = [data["phase"] for name, data in events if name == "phase"]
    assert phases == ["loading", "tokenizing"], phases
    for line in output.splitlines():
        assert line.startswith("{"), f"the worker's stdout and stderr carry events alone during a run: {line!r}"
        assert json.loads(line)["event"] != "log_line"


def test_a_killed_worker_s_run_is_detected_requeued_and_resumed_from_its_stored_checkpoint(store, tmp_path):
    with psycopg.connect(store["url"], autocommit=True) as connection:
        connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE status IN ('queued', 'running')")
    overrides = {"max_steps": "6", "save_every": "2", "eval_every": "0", "max_eval_examples": "4", "tokens_per_batch": "512"}
    run_id = queue_run(store["url"], store, overrides)
    first = start_worker(store["url"], tmp_path / "w1")
    with psycopg.connect(store["url"], autocommit=True) as connection:
        step = wait_for(
            lambda: (run_queue.latest_checkpoint(connection, run_id) or (None, None))[1], 300, "the first stored checkpoint"
        )
        first.send_signal(signal.SIGKILL)  # no goodbye: only the heartbeat can tell
        first.communicate()
        wait_for(
            lambda: connection.execute(
                "SELECT 1 FROM training_runs WHERE id = %s AND status = 'running' AND heartbeat_at < now() - interval '3 seconds'",
                (run_id,),
            ).fetchone(),
            30,
            "the dead worker's heartbeat to go stale",
        )
        second = start_worker(store["url"], tmp_path / "w2")
        output, _ = second.communicate(timeout=600)
        assert second.returncode == 0, output
        status, final_step = connection.execute("SELECT status, step FROM training_runs WHERE id = %s", (run_id,)).fetchone()
        events = connection.execute(
            "SELECT event, data FROM training_events WHERE run_id = %s ORDER BY id", (run_id,)
        ).fetchall()
        adapter = connection.execute("SELECT active, file_id FROM adapters WHERE run_id = %s", (run_id,)).fetchone()
        kinds = dict(connection.execute("SELECT kind, id FROM training_files WHERE run_id = %s", (run_id,)).fetchall())
        gguf = run_queue.get_file(connection, adapter[1])
        png = run_queue.get_file(connection, kinds["chart_png"])
    names = [name for name, _ in events]
    starts = [data for name, data in events if name == "start"]
    assert status == "succeeded" and final_step == 6, output
    assert "requeued" in names and names.count("claimed") == 2, names
    assert [s["resumed_from"] for s in starts] == [0, step], f"the second attempt resumed from step {step}"
    assert adapter[0] is True, "the new adapter is active"
    assert gguf[:4] == b"GGUF" and png.startswith(b"\x89PNG"), "the adapter and the chart are stored"


def test_a_full_run_trains_over_two_processes_and_publishes_its_gguf_to_the_model_store(store, tmp_path):
    with psycopg.connect(store["url"], autocommit=True) as connection:
        connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE status IN ('queued', 'running')")
    overrides = {"max_steps": "2", "save_every": "1", "eval_every": "0", "max_eval_examples": "4", "tokens_per_batch": "512",
                 "processes": "2", "export_type": "q8_0"}  # fmt: skip
    run_id = queue_run(store["url"], store, overrides, file="smollm2-135m-full-cpu.yaml")
    models = tmp_path / "models"
    worker = start_worker(store["url"], tmp_path / "w", env={"TWIN_MODEL_STORE": str(models), "OMP_NUM_THREADS": "1"})
    output, _ = worker.communicate(timeout=900)
    assert worker.returncode == 0, output
    with psycopg.connect(store["url"], autocommit=True) as connection:
        status, error = connection.execute("SELECT status, error FROM training_runs WHERE id = %s", (run_id,)).fetchone()
        row = connection.execute(
            "SELECT kind, file_id, store_path, sha256, bytes, active FROM adapters WHERE run_id = %s", (run_id,)
        ).fetchone()
        starts = connection.execute(
            "SELECT data FROM training_events WHERE run_id = %s AND event = 'start'", (run_id,)
        ).fetchall()
        stored_files = connection.execute("SELECT kind FROM training_files WHERE run_id = %s", (run_id,)).fetchall()
    assert status == "succeeded", f"{error}\n{output[-3000:]}"
    kind, file_id, store_path, digest, size, active = row
    assert (kind, file_id, active) == ("full", None, True), row
    gguf = models / store_path
    assert store_path == f"run-{run_id}/model-q8_0.gguf" and gguf.read_bytes()[:4] == b"GGUF"
    assert (size, digest) == (gguf.stat().st_size, hashlib.sha256(gguf.read_bytes()).hexdigest()), "size and checksum recorded"
    assert sorted(p.name for p in gguf.parent.iterdir()) == ["config.json", "events.jsonl", "launch.log", "launch.yaml", "metrics.json", "model-q8_0.gguf"], (
        "checkpoints and fp32 weights are removed once the GGUF is written"
    )
    assert [s[0]["processes"] for s in starts] == [2], "rank 0 speaks for both processes"
    assert sorted(k for (k,) in stored_files) == ["chart_png", "chart_svg"], "no gigabytes in the database: no checkpoints"


def test_a_killed_worker_s_full_run_stops_its_processes_and_resumes_from_the_store(store, tmp_path):
    with psycopg.connect(store["url"], autocommit=True) as connection:
        connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE status IN ('queued', 'running')")
    # Enough steps that orphaned processes would still be training when the test looks for them (the
    # kill comes at the first checkpoint, step 2 of 6), and few checkpoints: each is 1.6 GB to write.
    overrides = {"max_steps": "6", "save_every": "2", "eval_every": "0", "max_eval_examples": "4", "tokens_per_batch": "512",
                 "processes": "2"}  # fmt: skip
    run_id = queue_run(store["url"], store, overrides, file="smollm2-135m-full-cpu.yaml")
    env = {"TWIN_MODEL_STORE": str(tmp_path / "models"), "OMP_NUM_THREADS": "1"}
    launch = tmp_path / "models" / f"run-{run_id}" / "launch.yaml"
    first = start_worker(store["url"], tmp_path / "w1", env=env)
    with psycopg.connect(store["url"], autocommit=True) as connection:
        step = wait_for(
            lambda: connection.execute(
                "SELECT max((data->>'step')::int) FROM training_events WHERE run_id = %s AND event = 'checkpoint'", (run_id,)
            ).fetchone()[0],
            300,
            "the first sharded checkpoint in the store",
        )
        first.send_signal(signal.SIGKILL)
        first.communicate()
        # Its training processes die with it (parent-death signal), instead of training on unseen.
        wait_for(
            lambda: True if subprocess.run(["pgrep", "-f", str(launch)], capture_output=True).returncode == 1 else None,
            15,
            "the dead worker's training processes to stop",
        )
        wait_for(
            lambda: connection.execute(
                "SELECT 1 FROM training_runs WHERE id = %s AND heartbeat_at < now() - interval '3 seconds'", (run_id,)
            ).fetchone(),
            30,
            "the dead worker's heartbeat to go stale",
        )
        second = start_worker(store["url"], tmp_path / "w2", env=env)
        output, _ = second.communicate(timeout=900)
        assert second.returncode == 0, output
        status, error = connection.execute("SELECT status, error FROM training_runs WHERE id = %s", (run_id,)).fetchone()
        starts = [d for (d,) in connection.execute(
            "SELECT data FROM training_events WHERE run_id = %s AND event = 'start' ORDER BY id", (run_id,)
        ).fetchall()]  # fmt: skip
        kind = connection.execute("SELECT kind FROM adapters WHERE run_id = %s", (run_id,)).fetchone()
    assert status == "succeeded", f"{error}\n{output[-3000:]}"
    resumed = [s["resumed_from"] for s in starts]
    assert resumed[0] == 0 and resumed[-1] >= step > 0, f"the second worker resumed from the store's checkpoint: {resumed}"
    assert kind == ("full",)


def test_a_worker_claims_only_the_runs_meant_for_it(store):
    """`local`, `remote:<host>` or `any`; a run that needs a GPU only by a worker with one; a remote
    takes no full fine-tuning (its output belongs in the model store)."""
    config = psycopg.types.json.Jsonb({"file": "smollm2-135m-lora-cpu.yaml", "set": {}})
    with psycopg.connect(store["url"], autocommit=True) as connection:
        connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE status = 'queued'")
        ids = {}
        for name, target, needs_gpu, method in [
            ("for the remote", "remote:box", False, "lora"),
            ("needs a GPU", "any", True, "lora"),
            ("full", "any", False, "full"),
            ("for this machine", "local", False, "lora"),
        ]:
            ids[name] = connection.execute(
                "INSERT INTO training_runs (dataset_id, base_model_id, config, target, needs_gpu, method) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (store["dataset"], store["base"], config, target, needs_gpu, method),
            ).fetchone()[0]
        try:
            cpu = [run_queue.claim(connection, "cpu:1:a", "local", False) for _ in range(3)]
            assert [run and run.id for run in cpu] == [ids["full"], ids["for this machine"], None]
            connection.execute("UPDATE training_runs SET status = 'queued' WHERE id = %s", (ids["full"],))
            remote = [run_queue.claim(connection, "box:2:b", "remote:box", True, ["lora", "qlora"]) for _ in range(3)]
            assert [run and run.id for run in remote] == [ids["for the remote"], ids["needs a GPU"], None]
        finally:
            connection.execute("UPDATE training_runs SET status = 'cancelled' WHERE id = ANY(%s)", (list(ids.values()),))


@pytest.mark.unit
def test_a_base_sent_over_the_link_stands_in_for_a_path_on_the_owners_machine(tmp_path):
    from twin_trainer.worker import sent_base

    run = queued_run(base_gguf="/root/models/smol.gguf", base_fingerprint="ab" * 32)
    bases = tmp_path / "bases"
    assert sent_base(run, bases) == run, "not sent: the run says where it is not, and check_base says so"
    (bases / run.base_fingerprint).mkdir(parents=True)
    (bases / run.base_fingerprint / "smol.gguf").write_bytes(b"GGUF")
    assert sent_base(run, bases).base_gguf == str(bases / run.base_fingerprint / "smol.gguf")
    assert sent_base(run, None) == run
    here = tmp_path / "smol.gguf"
    here.write_bytes(b"GGUF")
    local = queued_run(base_gguf=str(here), base_fingerprint="ab" * 32)
    assert sent_base(local, bases) == local, "a path that is here wins"


@pytest.mark.unit
def test_a_failed_runs_reason_names_the_machine_the_step_and_the_fix_for_memory_and_disk():
    import errno

    from twin_trainer.worker import failure_reason

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name, without importing torch
        pass

    assert failure_reason(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 37, "gpu-box") == (
        "out of GPU memory on gpu-box at step 37: lower tokens_per_batch, or train with QLoRA "
        "(CUDA out of memory. Tried to allocate 2.00 GiB)"
    )
    full = OSError(errno.ENOSPC, "No space left on device", "/home/u/.cache/twin/worker/run-3/checkpoint-40")
    assert failure_reason(full, 40, "gpu-box") == (
        "disk full on gpu-box at step 40 writing /home/u/.cache/twin/worker/run-3/checkpoint-40: free some space there"
    )
    assert failure_reason(ValueError("no_such_attention"), None, "h") == "ValueError on h before training: no_such_attention"
