"""The trainer's side of the PostgreSQL store: the datasets `twin dataset` wrote there, and the
evaluations `twin eval` sampled (read for the report, which is written back). The training queue
has its own module, run_queue.py.

Every statement the trainer sends, outside run_queue.py, is here: callers get plain values.
Connection strings carry passwords: errors name the database by host and name only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .errors import DatasetFormatError
from .privacy import redact


def describe(url: str) -> str:
    """host:port/name of a connection string, without user or password (even when it cannot be parsed)."""
    if "://" not in url:  # libpq's keyword form: host=… port=… dbname=…
        keys = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", url))
        host, port, name = (keys.get(key, "").strip("'") for key in ("host", "port", "dbname"))
        return f"{host or 'localhost'}:{port or 5432}/{name}"
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "an unreadable DATABASE_URL"


def connect(url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True)
    except (psycopg.Error, ValueError, TypeError) as error:
        # Any failure, not just OperationalError: a malformed URL raises ProgrammingError, and
        # psycopg's message can quote the whole connection string. Keep the first line, redacted.
        reason = redact(str(error).splitlines()[0]) if str(error) else type(error).__name__
        raise ConnectionError(f"cannot connect to PostgreSQL at {describe(url)}: {reason}") from None


# ── datasets ───────────────────────────────────────────────────────────────────


def read_dataset(url: str, dataset_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, examples as the JSONL rows) of a ready dataset, examples in their stored order."""
    with connect(url) as connection:
        found = connection.execute(
            "SELECT status, format_version, manifest, error FROM datasets WHERE id = %s", (dataset_id,)
        ).fetchone()
        if found is None:
            raise DatasetFormatError(f"dataset {dataset_id}: not in the database at {describe(url)}")
        status, format_version, manifest, error = found
        if status != "ready":
            detail = f" ({error})" if error else ""
            raise DatasetFormatError(f"dataset {dataset_id}: status is {status}{detail}, not ready")
        rows = connection.execute(
            "SELECT example_id, chat_id, split, speakers, segments FROM dataset_examples "
            "WHERE dataset_id = %s ORDER BY ordinal",
            (dataset_id,),
        ).fetchall()
    manifest = {**(manifest or {}), "formatVersion": (manifest or {}).get("formatVersion", format_version)}
    examples = [
        {"id": example_id, "chat_id": chat_id, "split": split, "speakers": speakers, "segments": segments}
        for example_id, chat_id, split, speakers, segments in rows
    ]
    return manifest, examples


# ── evaluations ────────────────────────────────────────────────────────────────

EVALUATION_COLUMNS = ("id", "dataset_id", "speaker", "models", "settings")
SAMPLE_COLUMNS = ("id", "model", "example_id", "chat_id", "turn_index", "context", "real", "generated", "probe")


def read_evaluation(connection: Any, evaluation_id: int) -> dict[str, Any] | None:
    """An evaluation's settings and the models it compared (keys as EVALUATION_COLUMNS); None if there is none."""
    row = connection.execute(
        f"SELECT {', '.join(EVALUATION_COLUMNS)} FROM evaluations WHERE id = %s", (evaluation_id,)
    ).fetchone()
    return dict(zip(EVALUATION_COLUMNS, row)) if row else None


def read_evaluation_samples(connection: Any, evaluation_id: int) -> list[dict[str, Any]]:
    """Every sample of an evaluation (held-out turns and canary probes), in the order they were stored."""
    return [
        dict(zip(SAMPLE_COLUMNS, row))
        for row in connection.execute(
            f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM evaluation_samples WHERE evaluation_id = %s ORDER BY id",
            (evaluation_id,),
        )
    ]


def adapter_run_metrics(connection: Any, adapter_id: int, dataset_id: int) -> dict[str, Any] | None:
    """The trainer's metrics of the run that made an adapter, when that run trained on `dataset_id`."""
    row = connection.execute(
        "SELECT r.metrics FROM adapters a JOIN training_runs r ON r.id = a.run_id WHERE a.id = %s AND r.dataset_id = %s",
        (adapter_id, dataset_id),
    ).fetchone()
    return row[0] if row else None


def dataset_canary(connection: Any, dataset_id: int) -> dict[str, Any] | None:
    """The canary planted in a dataset before training (its manifest's `canary`), if any."""
    row = connection.execute("SELECT manifest->'canary' FROM datasets WHERE id = %s", (dataset_id,)).fetchone()
    return row[0] if row else None


def vote_counts(connection: Any, evaluation_id: int) -> dict[str, int]:
    """The "Which one is real?" rounds on an evaluation's samples: those the twin won, and all answered."""
    fooled, total = connection.execute(
        "SELECT count(*) FILTER (WHERE v.fooled), count(v.fooled) FROM guess_votes v "
        "JOIN evaluation_samples s ON s.id = v.sample_id WHERE s.evaluation_id = %s",
        (evaluation_id,),
    ).fetchone()
    return {"fooled": int(fooled), "total": int(total)}


def store_report(connection: Any, evaluation_id: int, report: str, summary: dict[str, Any], files: dict[str, bytes]) -> None:
    """The report, its summary and its files (replacing any earlier ones), and the evaluation ready: together."""
    from psycopg.types.json import Jsonb

    with connection.transaction():
        connection.execute("DELETE FROM evaluation_files WHERE evaluation_id = %s", (evaluation_id,))
        for name, data in files.items():
            connection.execute(
                "INSERT INTO evaluation_files (evaluation_id, name, data) VALUES (%s, %s, %s)", (evaluation_id, name, data)
            )
        connection.execute(
            "UPDATE evaluations SET status = 'ready', report = %s, summary = %s, finished_at = now() WHERE id = %s",
            (report, Jsonb(summary), evaluation_id),
        )


def fail_evaluation(url: str, evaluation_id: int, reason: str) -> None:
    """Marks an evaluation failed with the reason, for whoever waits on it."""
    with connect(url) as connection:
        connection.execute(
            "UPDATE evaluations SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
            (reason, evaluation_id),
        )
