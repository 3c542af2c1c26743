"""The training queue in PostgreSQL, as a worker sees it (tables from migrations/0006_training.sql).

A run is a row. Workers claim queued runs with FOR UPDATE SKIP LOCKED, so two workers never take
the same one; a worker beats the run's heartbeat while it trains, so one that died leaves a stale
heartbeat that the next worker re-queues (the run resumes from its stored checkpoint).
Files (checkpoints, the GGUF adapter, charts) go into the database in chunks.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

CHUNK_BYTES = 4 * 1024 * 1024
MAX_ATTEMPTS = 3  # a run whose worker died this many times is failed, not re-queued again


@dataclass(frozen=True)
class Run:
    id: int
    dataset_id: int
    method: str
    config: dict[str, Any]
    attempts: int
    base_name: str
    base_gguf: str
    base_hf: str | None
    base_fingerprint: str  # the served GGUF's, which the adapter records (a worker may have only the weights)
    base_model_id: int
    base_architecture: str  # the served GGUF's general.architecture
    base_hf_revision: str | None = None  # the hub commit `twin model pull` fetched and checked
    base_weights_fingerprint: str | None = None  # those weights' fingerprint (weights.weights_fingerprint)


def register_worker(connection: Any, worker_id: str, host: str, pid: int, hardware: dict[str, Any]) -> None:
    connection.execute(
        "INSERT INTO training_workers (id, host, pid, hardware) VALUES (%s, %s, %s, %s)",
        (worker_id, host, pid, Jsonb(hardware)),
    )


def worker_heartbeat(connection: Any, worker_id: str, stopped: bool = False) -> None:
    connection.execute(
        "UPDATE training_workers SET heartbeat_at = now(), stopped_at = CASE WHEN %s THEN now() END WHERE id = %s",
        (stopped, worker_id),
    )


def add_event(connection: Any, run_id: int, event: dict[str, Any]) -> None:
    data = {k: v for k, v in event.items() if k != "event"}
    connection.execute(
        "INSERT INTO training_events (run_id, event, data) VALUES (%s, %s, %s)",
        (run_id, event["event"], Jsonb(data)),
    )


def add_log_lines(connection: Any, run_id: int, lines: list[str]) -> None:
    """The run's own output (what it printed that is not an event), one `log_line` event per line."""
    if not lines:
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO training_events (run_id, event, data) VALUES (%s, 'log_line', %s)",
            [(run_id, Jsonb({"line": line})) for line in lines],
        )


def requeue_stale(connection: Any, stale_seconds: float) -> list[tuple[int, str, str]]:
    """Runs whose worker stopped beating: back to the queue (or failed after MAX_ATTEMPTS).

    Returns (run id, the worker that went silent, the new status).
    """
    with connection.transaction():
        rows = connection.execute(
            "SELECT id, worker, attempts FROM training_runs WHERE status = 'running' "
            "AND heartbeat_at < now() - make_interval(secs => %s) FOR UPDATE SKIP LOCKED",
            (stale_seconds,),
        ).fetchall()
        changed = []
        for run_id, worker, attempts in rows:
            status = "failed" if attempts >= MAX_ATTEMPTS else "queued"
            reason = f"worker {worker} stopped sending heartbeats"
            connection.execute(
                "UPDATE training_runs SET status = %s, worker = NULL, heartbeat_at = NULL, "
                "error = CASE WHEN %s = 'failed' THEN %s END, "
                "finished_at = CASE WHEN %s = 'failed' THEN now() END WHERE id = %s",
                (status, status, f"{reason} {attempts} times", status, run_id),
            )
            add_event(connection, run_id, {"event": "requeued" if status == "queued" else "failed", "reason": reason})
            changed.append((run_id, worker, status))
    return changed


def claim(
    connection: Any,
    worker_id: str,
    target: str = "local",
    has_gpu: bool = False,
    methods: list[str] | None = None,
) -> Run | None:
    """The oldest queued run meant for this worker (its target or `any`; one that needs a GPU only
    when this worker has one; of `methods` only, when given), now running on it; None when there is none."""
    with connection.transaction():
        row = connection.execute(
            "SELECT r.id FROM training_runs r WHERE r.status = 'queued' AND r.target IN ('any', %s) "
            "AND (%s OR NOT r.needs_gpu) AND (%s::text[] IS NULL OR r.method = ANY(%s::text[])) "
            "ORDER BY r.id LIMIT 1 FOR UPDATE SKIP LOCKED",
            (target, has_gpu, methods, methods),
        ).fetchone()
        if row is None:
            return None
        found = connection.execute(
            "UPDATE training_runs r SET status = 'running', worker = %s, attempts = r.attempts + 1, "
            "started_at = coalesce(r.started_at, now()), heartbeat_at = now() "
            "FROM base_models b WHERE r.id = %s AND b.id = r.base_model_id "
            "RETURNING r.id, r.dataset_id, r.method, r.config, r.attempts, b.name, b.gguf_path, b.hf_source, "
            "b.fingerprint, b.id, b.architecture, b.hf_revision, b.weights_fingerprint",
            (worker_id, row[0]),
        ).fetchone()
        add_event(connection, found[0], {"event": "claimed", "worker": worker_id, "attempt": found[4]})
    return Run(*found)


def run_heartbeat(connection: Any, run_id: int, worker_id: str) -> tuple[bool, bool]:
    """Beats the run's heartbeat: (still ours, cancel requested)."""
    row = connection.execute(
        "UPDATE training_runs SET heartbeat_at = now() WHERE id = %s AND worker = %s AND status = 'running' "
        "RETURNING cancel_requested_at IS NOT NULL",
        (run_id, worker_id),
    ).fetchone()
    return (row is not None, bool(row and row[0]))


def forget_steps_after(connection: Any, run_id: int, step: int) -> int:
    """A resumed run retrains the steps after its checkpoint: the lost attempt's events for them go,
    so the chart, the progress and the timing see each step once."""
    return connection.execute(
        "DELETE FROM training_events WHERE run_id = %s AND event IN ('log', 'eval', 'checkpoint') "
        "AND (data->>'step')::int > %s",
        (run_id, step),
    ).rowcount


def record_progress(connection: Any, run_id: int, step: int, max_steps: int | None) -> None:
    connection.execute(
        "UPDATE training_runs SET step = %s, max_steps = coalesce(%s, max_steps) WHERE id = %s",
        (step, max_steps, run_id),
    )


def finish(connection: Any, run: Run, worker_id: str, status: str, error: str | None = None) -> bool:
    """Ends a run this worker holds (failed, cancelled, or back to queued); False if it is no longer ours."""
    terminal = status != "queued"
    with connection.transaction():
        row = connection.execute(
            "UPDATE training_runs SET status = %s, error = %s, worker = CASE WHEN %s THEN worker END, "
            "heartbeat_at = NULL, finished_at = CASE WHEN %s THEN now() END "
            "WHERE id = %s AND worker = %s AND status = 'running' RETURNING id",
            (status, error, terminal, terminal, run.id, worker_id),
        ).fetchone()
        if row is not None:
            add_event(connection, run.id, {"event": status, **({"reason": error} if error else {})})
    return row is not None


@dataclass(frozen=True)
class StoredModel:
    """A fully tuned model's GGUF in the model store: its path there, size and checksum."""

    path: str
    sha256: str
    bytes: int


def succeed(
    connection: Any,
    run: Run,
    worker_id: str,
    tuned: int | StoredModel,
    metrics: dict[str, Any],
    name: str,
) -> int | None:
    """Marks the run succeeded and makes its tuned model the active one, together; None if the run is not ours.

    `tuned` is the adapter's file id in the database, or a full model in the model store.

    A cancel that arrived after training ended wins: the run is cancelled and the active adapter stays.
    """
    with connection.transaction():
        row = connection.execute(
            "SELECT cancel_requested_at IS NOT NULL FROM training_runs "
            "WHERE id = %s AND worker = %s AND status = 'running' FOR UPDATE",
            (run.id, worker_id),
        ).fetchone()
        if row is None:
            return None
        if row[0]:
            connection.execute(
                "UPDATE training_runs SET status = 'cancelled', finished_at = now(), heartbeat_at = NULL WHERE id = %s",
                (run.id,),
            )
            add_event(connection, run.id, {"event": "cancelled"})
            return None
        connection.execute("UPDATE adapters SET active = false WHERE active")
        stored = tuned if isinstance(tuned, StoredModel) else None
        adapter_id = connection.execute(
            "INSERT INTO adapters (run_id, base_model_id, kind, file_id, store_path, sha256, bytes, name, metrics, active) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, true) RETURNING id",
            (
                run.id,
                run.base_model_id,
                "full" if stored else "lora",
                None if stored else tuned,
                stored and stored.path,
                stored and stored.sha256,
                stored and stored.bytes,
                name,
                Jsonb(metrics),
            ),
        ).fetchone()[0]
        connection.execute(
            "UPDATE training_runs SET status = 'succeeded', metrics = %s, finished_at = now(), heartbeat_at = NULL "
            "WHERE id = %s",
            (Jsonb(metrics), run.id),
        )
        add_event(connection, run.id, {"event": "succeeded", "adapter": adapter_id})
    return adapter_id


# ── files ──────────────────────────────────────────────────────────────────────


def put_file(connection: Any, run_id: int, kind: str, data: bytes, step: int | None = None) -> int:
    """Stores `data` in chunks; for checkpoints, older ones of the run go once the new one is in."""
    with connection.transaction():
        file_id = connection.execute(
            "INSERT INTO training_files (run_id, kind, step, bytes, sha256) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (run_id, kind, step, len(data), hashlib.sha256(data).hexdigest()),
        ).fetchone()[0]
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO training_file_chunks (file_id, ordinal, data) VALUES (%s, %s, %s)",
                [(file_id, i, data[start : start + CHUNK_BYTES]) for i, start in enumerate(range(0, len(data), CHUNK_BYTES))],
            )
        if kind == "checkpoint":
            connection.execute(
                "DELETE FROM training_files WHERE run_id = %s AND kind = 'checkpoint' AND id <> %s", (run_id, file_id)
            )
    return file_id


def get_file(connection: Any, file_id: int) -> bytes:
    expected = connection.execute("SELECT bytes, sha256 FROM training_files WHERE id = %s", (file_id,)).fetchone()
    chunks = connection.execute(
        "SELECT data FROM training_file_chunks WHERE file_id = %s ORDER BY ordinal", (file_id,)
    ).fetchall()
    data = b"".join(bytes(chunk) for (chunk,) in chunks)
    if expected is None or len(data) != expected[0] or hashlib.sha256(data).hexdigest() != expected[1]:
        raise ValueError(f"stored file {file_id} is damaged (size or sha256 differ from what was written)")
    return data


def latest_checkpoint(connection: Any, run_id: int) -> tuple[int, int] | None:
    """(file id, step) of the run's stored checkpoint."""
    return connection.execute(
        "SELECT id, step FROM training_files WHERE run_id = %s AND kind = 'checkpoint' ORDER BY step DESC, id DESC LIMIT 1",
        (run_id,),
    ).fetchone()


def tar_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=folder.name)
    return buffer.getvalue()


def untar_into(data: bytes, parent: Path) -> None:
    """A stored checkpoint unpacked under `parent`, refusing any member that would land outside it."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(parent, filter="data")
            return
        # Python 3.11.0-3.11.3 (Debian 12's 3.11.2, on many rented machines) has no extraction filters.
        root = parent.resolve()
        for member in archive.getmembers():
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
                raise ValueError(f"checkpoint archive: {member.name!r} is not a plain file inside the run folder")
        archive.extractall(parent)


def loss_points(connection: Any, run_id: int) -> dict[str, list[tuple[int, float]]]:
    """Training and evaluation loss per step from the run's events; a step redone after a resume counts once (the last)."""
    train: dict[int, float] = {}
    evaluation: dict[int, float] = {}
    for event, data in connection.execute(
        "SELECT event, data FROM training_events WHERE run_id = %s AND event IN ('log', 'eval') ORDER BY id", (run_id,)
    ):
        data = data if isinstance(data, dict) else json.loads(data)
        target = train if event == "log" else evaluation
        if data.get("loss") is not None:
            target[int(data["step"])] = float(data["loss"])
    return {"train": sorted(train.items()), "eval": sorted(evaluation.items())}
