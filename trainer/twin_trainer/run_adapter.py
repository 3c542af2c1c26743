"""A finished LoRA run's adapter, as the trainer left it in PostgreSQL: its last checkpoint unpacked
into a folder (PEFT reads the adapter from there), and the base it was trained on. What
`compare-memory` evaluates when it is given runs rather than folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import run_queue


class RunAdapterError(ValueError):
    """A run with no adapter to evaluate; the message names the run."""


def run_base(connection: Any, run_id: int) -> str:
    """The base a run trained on: its HF weights where registered, else its GGUF (as the worker loads it)."""
    row = connection.execute(
        "SELECT b.hf_source, b.gguf_path FROM training_runs r JOIN base_models b ON b.id = r.base_model_id WHERE r.id = %s",
        (run_id,),
    ).fetchone()
    if row is None:
        raise RunAdapterError(f"there is no training run {run_id}")
    return str(row[0] or row[1])


def checkout_adapter(connection: Any, run_id: int, parent: Path) -> Path:
    """The run's last stored checkpoint unpacked under `parent`; its folder holds the adapter."""
    stored = run_queue.latest_checkpoint(connection, run_id)
    if stored is None:
        raise RunAdapterError(f"run {run_id} has no stored checkpoint (a full fine-tuning run, or one that never saved)")
    file_id, step = stored
    folder = parent / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    run_queue.untar_into(run_queue.get_file(connection, file_id), folder)
    found = [p.parent for p in folder.rglob("adapter_config.json")]
    if not found:
        raise RunAdapterError(f"run {run_id}: its checkpoint at step {step} holds no adapter_config.json")
    return found[0]
