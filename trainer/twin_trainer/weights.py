"""The base's HF weights for training: a folder on this machine, or a hub repository fetched once.

A registered base names its weights (`hf_source`) as a folder or as a hub id, `org/repo`. A hub id is
fetched with huggingface_hub (which reads HF_ENDPOINT, for a mirror, and HF_TOKEN, for gated
repositories, itself) into `<model store>/hub/<org>/<repo>/`, the folder `twin model pull` puts a
GGUF repository's file in, so a pull with `--weights` and the workers that share the store fetch it
once; a worker without a store keeps it in its cache. Only what training reads comes: the
safetensors, the config and the tokenizer files of the repository's top folder. A file written last
(FETCHED) says the folder is whole; an interrupted fetch resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from . import environment

FETCHED = ".twin-weights.json"
WANTED = ["*.safetensors", "*.safetensors.index.json", "*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class WeightsError(RuntimeError):
    """The weights cannot be had: an unknown or gated repository, an unreachable hub, no safetensors."""


def is_hub_id(source: str) -> bool:
    """`org/repo`, and not a folder on this machine (a relative `org/repo` folder wins)."""
    return bool(HUB_ID.match(source)) and not Path(source).exists()


def weights_root() -> Path:
    """Where fetched weights go: the model store shared with twin and other workers, else this machine's cache."""
    store = environment.model_store()
    return (store if store is not None else environment.cache_dir()) / "hub"


def weights_folder(repo: str, root: Path | None = None) -> Path:
    return (root or weights_root()).joinpath(*repo.split("/"))


def weights_fingerprint(folder: str | Path) -> str:
    """What the weights are, byte for byte: sha256 over each top-level safetensors file's name and
    sha256. `twin model pull` records it with the GGUF it checked them against, so a worker that has
    only the weights (a remote) knows it fetched the same ones."""
    lines = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(16 * 2**20):
                digest.update(chunk)
        lines.append(f"{path.name} {digest.hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def fetched(folder: Path) -> dict[str, Any] | None:
    """What FETCHED records of a whole fetch in `folder` (repository, revision, files, bytes); None if none finished."""
    record = folder / FETCHED
    return json.loads(record.read_text()) if record.is_file() else None


def fetch_weights(repo: str, dest: Path | None = None, revision: str | None = None, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Downloads the weights of hub repository `repo` into `dest` (resuming a partial fetch); what it holds."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars

    if not HUB_ID.match(repo):
        raise WeightsError(f"{repo}: expected a hub repository as <org>/<repo>")
    dest = dest or weights_folder(repo)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / FETCHED).unlink(missing_ok=True)
    # Its bars would be a stream of carriage returns in a log; a line every few seconds says as much.
    disable_progress_bars()
    where = f"{repo}{'@' + revision if revision else ''}"
    options = {
        "repo_id": repo,
        "revision": revision,
        "local_dir": dest,
        "allow_patterns": WANTED,
        "ignore_patterns": ["*/*"],
        "token": environment.hf_token(),  # None: huggingface_hub's own lookup (its login, HF_TOKEN)
    }
    try:
        plan = snapshot_download(**options, dry_run=True)
        total = sum(file.file_size or 0 for file in plan)
        print(f"fetching {where}: {len(plan)} files, {total / 1e6:.0f} MB → {dest}", file=log, flush=True)
        with _Progress(dest, total, log):
            snapshot_download(**options)
    except GatedRepoError as error:
        raise WeightsError(
            f"{repo} is gated: accept its licence on the hub, then set HF_TOKEN to a token of that account ({_status(error)})"
        ) from None
    except RepositoryNotFoundError as error:
        raise WeightsError(f"{repo}: no such repository on the hub, or a private one HF_TOKEN cannot see ({_status(error)})") from None
    except RevisionNotFoundError:
        raise WeightsError(f"{repo} has no revision {revision}") from None
    except LocalEntryNotFoundError as error:
        raise WeightsError(f"cannot reach the hub for {repo} (HF_ENDPOINT sets a mirror): {error}") from None
    except HfHubHTTPError as error:
        raise WeightsError(f"the hub failed fetching {repo} ({_status(error)}): fetch again to resume") from None
    files = sorted(p.name for p in dest.iterdir() if p.is_file() and p.name != FETCHED)
    if not any(name.endswith(".safetensors") for name in files) or "config.json" not in files:
        raise WeightsError(
            f"{repo} has no safetensors weights with a config.json in its top folder (it has {', '.join(files) or 'nothing'} there): "
            "twin trains from safetensors"
        )
    record = {
        "repo": repo,
        "revision": revision,
        "folder": str(dest),
        "files": files,
        "bytes": sum((dest / name).stat().st_size for name in files),
        "fingerprint": weights_fingerprint(dest),
    }
    (dest / FETCHED).write_text(json.dumps(record, indent=2))
    print(f"fetched {where}: {record['bytes'] / 1e6:.0f} MB", file=log, flush=True)
    return record


def resolve_weights(source: str, revision: str | None = None, log: TextIO = sys.stderr) -> Path:
    """The folder of a base's weights on this machine: `source` itself, or hub id `source` fetched
    (once; again when the folder holds another revision than the one pinned at pull time)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        return folder
    if not is_hub_id(source):
        raise FileNotFoundError(f"base weights {source}: neither a folder on this machine nor a hub id <org>/<repo>")
    folder = weights_folder(source)
    record = fetched(folder)
    if record is None or (revision is not None and record.get("revision") != revision):
        fetch_weights(source, folder, revision=revision, log=log)
    return folder


def fingerprint_of(folder: Path) -> str:
    """The weights' fingerprint: the one their fetch recorded, else computed now."""
    record = fetched(folder)
    if record and record.get("fingerprint") and record.get("folder") == str(folder):
        return str(record["fingerprint"])
    return weights_fingerprint(folder)


def _status(error: Any) -> str:
    response = getattr(error, "response", None)
    return f"HTTP {response.status_code}" if response is not None else type(error).__name__


class _Progress(threading.Thread):
    """A line every `every` seconds with the bytes in `folder` so far (partial downloads included)."""

    def __init__(self, folder: Path, total: int, log: TextIO, every: float = 10.0):
        super().__init__(daemon=True)
        self.folder, self.total, self.log, self.every = folder, total, log, every
        self.done = threading.Event()
        self.started_at = time.monotonic()

    def __enter__(self) -> _Progress:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.done.set()
        self.join()

    def run(self) -> None:
        while not self.done.wait(self.every):
            size = 0
            for path in self.folder.rglob("*"):
                try:
                    size += path.stat().st_size if path.is_file() else 0
                except OSError:  # a partial file renamed into place meanwhile
                    pass
            share = f" ({min(size / self.total, 1):.0%})" if self.total else ""
            print(f"fetched {size / 1e6:.0f} of {self.total / 1e6:.0f} MB{share}", file=self.log, flush=True)
