"""The trainer's side of the PostgreSQL store: datasets that `twin dataset` wrote there.

Connection strings carry passwords: errors name the database by host and name only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .data import DatasetFormatError
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
