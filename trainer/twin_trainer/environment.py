"""The environment variables the trainer reads, all of them, each behind one small accessor.

No other module reads `os.environ` (tests/test_architecture.py keeps it so): what a process is told
from outside is listed here, with who sets it. Every accessor reads the variable when called, so a
value set after import (a test, a launcher) is seen.
"""

from __future__ import annotations

import os
from pathlib import Path


# The secrets a link sent (see adopt_link_secrets): held here, never in os.environ, which every child
# process inherits (matplotlib's fc-list, torch's compilers, pip) and /proc/<pid>/environ shows.
_link_secrets: dict[str, str] = {}


def database_url() -> str | None:
    """PostgreSQL, where datasets, the training queue and evaluations are."""
    # Set by twin (Node) for the worker and the report it starts; by hand or compose for a remote worker;
    # sent on stdin by `twin worker remote`.
    return _link_secrets.get("DATABASE_URL") or os.environ.get("DATABASE_URL")


def hf_token() -> str | None:
    """The Hugging Face token, passed to huggingface_hub; the trainer also keeps it out of its output."""
    # Set by the user (a shell, compose) for gated models; sent on stdin by `twin worker remote`.
    return _link_secrets.get("HF_TOKEN") or os.environ.get("HF_TOKEN") or None


def cache_dir() -> Path:
    """twin's cache folder: converted GGUF bases (hf/) and the worker's scratch runs (worker/)."""
    # XDG_CACHE_HOME: the desktop session, or the trainer image (/cache); unset, ~/.cache.
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "twin"


def model_store() -> Path | None:
    """The folder fully tuned models and their checkpoints go to, shared by the workers and the bot."""
    # Set by twin for the local worker (from its own TWIN_MODEL_STORE or TWIN_DATA_DIR), by compose for others.
    store = os.environ.get("TWIN_MODEL_STORE")
    return Path(store) if store else None


def take_parent_pid() -> int | None:
    """The pid of the twin process that started this one, removed from the environment as it is read,
    so the processes this one starts (torchrun's) are not taken for twin's direct children."""
    # Set by twin (src/config/env.ts) on every trainer process it starts.
    parent = os.environ.pop("TWIN_PARENT_PID", None)
    return int(parent) if parent and parent.isdigit() else None


# ── a distributed launch ──────────────────────────────────────────────────────
# RANK, WORLD_SIZE and LOCAL_RANK are set by torchrun (`python -m torch.distributed.run`) on each
# process it starts, with the rendezvous that torch.distributed reads itself (MASTER_ADDR, …).


def launched() -> bool:
    """True in a process torchrun started; False for a run started alone (a world of one)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """The number of processes torchrun started (1 when started alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine: the GPU it takes (0 when started alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def adopt_link_secrets(database_url: str, hf_token: str | None) -> None:
    """The secrets `twin worker remote` sends over the SSH link on stdin (never argv, never a file):
    from now on `database_url()` and `hf_token()` return them, and the output guard redacts them.
    They stay in this process: a child that needs one is given it explicitly (`environment_with_secrets`)."""
    _link_secrets["DATABASE_URL"] = database_url
    if hf_token:
        _link_secrets["HF_TOKEN"] = hf_token


def environment_with_secrets() -> dict[str, str]:
    """This process's environment plus the link's secrets, for the one kind of child that must read
    the database itself (the processes of a distributed launch)."""
    return {**os.environ, **_link_secrets}
