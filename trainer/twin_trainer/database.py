"""The trainer's side of the PostgreSQL store: datasets that `twin dataset` wrote there.

Connection strings carry passwords: errors name the database by host and name only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .data import DatasetFormatError


def describe(url: str) -> str:
    """host:port/name of a connection string, without user or password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


def connect(url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as error:
        # psycopg's message can quote the connection string; keep only its first line's gist.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        for secret in filter(None, [urlsplit(url).password]):
            reason = reason.replace(secret, "***")
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
