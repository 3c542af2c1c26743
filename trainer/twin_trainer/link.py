"""A worker that `twin worker remote` started over SSH on a rented machine.

Its standard input is the link: the first line carries the secrets as JSON (the database role's
connection string through the tunnel, the Hugging Face token), the following lines are commands
("stop": finish the step, store a checkpoint, re-queue the run, exit). The end of input means the
SSH link is gone, and the database with it (it is reached through the same link): nothing can be
stored any more, so the process leaves at once and twin re-queues the run from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Callable, TextIO

LINK_LOST_EXIT = 75  # EX_TEMPFAIL: twin reconnects


class LinkError(ValueError):
    pass


def read_secrets(stream: TextIO) -> dict[str, Any]:
    """The first line: {"database_url": …, "hf_token": … or null}."""
    line = stream.readline()
    if not line:
        raise LinkError("the link closed before the secrets arrived")
    try:
        secrets = json.loads(line)
    except json.JSONDecodeError as error:
        raise LinkError(f"the first line on stdin is not JSON ({error.msg})") from None
    if not isinstance(secrets, dict) or not isinstance(secrets.get("database_url"), str):
        raise LinkError('the first line on stdin must be {"database_url": "…", "hf_token": …}')
    return secrets


class Link(threading.Thread):
    """Follows the link's commands; `on_stop` for "stop", `on_lost` when the input ends."""

    def __init__(self, stream: TextIO, on_stop: Callable[[], None], on_lost: Callable[[], None]):
        super().__init__(daemon=True, name="link")
        self.stream, self.on_stop, self.on_lost = stream, on_stop, on_lost

    def run(self) -> None:
        for line in self.stream:
            if line.strip() == "stop":
                self.on_stop()
        self.on_lost()


def leave_now() -> None:
    """The link is gone: no checkpoint can reach the database, so stop training this instant."""
    print("the link to twin is gone: stopping (twin re-queues the run from its last checkpoint)", file=sys.stderr)
    sys.stderr.flush()
    os._exit(LINK_LOST_EXIT)
