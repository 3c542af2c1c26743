"""What the trainer prints that is not an event: kept off the app's terminal, kept with the run.

The app draws its own progress bar from the run's events, so nothing else may reach the terminal it
draws on. Libraries print progress bars (tqdm), warnings and notices to stdout and stderr, and
native code (PyTorch's C++ warnings, gloo, OpenMP) writes to file descriptors 1 and 2 directly, past
`sys.stderr`. So the worker points both descriptors at a pipe (`OutputCapture`): a reader thread
hands every line to the run being trained (the worker stores them as its `log_line` events, so
`twin train log <run>` shows them wherever the worker runs) and, between runs, to the original
stderr (the worker's own console: a terminal, `docker compose logs`, or twin, which keeps it off
its bar). The JSON events keep their own channel: a copy of the original stdout.

`quiet_libraries` turns the libraries' progress bars off: a bar redrawn with carriage returns is
noise in a log, and the run's events already say how far it is.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import uuid
from typing import Callable, TextIO

from .privacy import redact, redacting

Sink = Callable[[str], None]
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # a tqdm bar redraws with \r: each redraw is a line


def quiet_libraries() -> None:
    """No progress bars from transformers or huggingface_hub (the `Loading weights` bar, downloads).

    Their warnings and notices still print, to stderr: in a worker, to the run's log."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # huggingface_hub's bars too


class OutputCapture:
    """File descriptors 1 and 2 into a pipe, read line by line (redacted) into the current sink.

    `events` is where JSON events go (the original stdout); `attach(sink)` sends the lines to a
    run's log until `detach()`, which first waits for every line written before it (`sync`).
    """

    def __init__(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._saved = (os.dup(1), os.dup(2))
        self.events: TextIO = redacting(open(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace"))
        self._console = open(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        for stream in (sys.stdout, sys.stderr):  # a line reaches the log as it is printed
            try:
                stream.reconfigure(line_buffering=True)
            except AttributeError:
                pass
        self._marker = f"twin-output-sync-{uuid.uuid4().hex}"
        self._synced = threading.Event()
        self._lock = threading.Lock()
        self._sink: Sink | None = None
        self._reader = threading.Thread(target=self._read, args=(read,), name="output-capture", daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        pending = b""
        with open(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = _LINE_BREAK.split(pending + chunk)
                for line in lines:
                    self._line(line)
        if pending:
            self._line(pending)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip()
        if text == self._marker:
            self._synced.set()
            return
        if not text:
            return
        text = redact(text)
        with self._lock:
            sink = self._sink
        try:
            if sink is not None:
                sink(text)
            else:
                self._console.write(text + "\n")
        except Exception:  # the reader must outlive a broken sink: the pipe would fill and block the run
            pass

    def sync(self, timeout: float = 10.0) -> None:
        """Returns once every line written so far (by this process, to either descriptor) was handed on."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        self._synced.clear()
        os.write(2, f"{self._marker}\n".encode())
        self._synced.wait(timeout)

    def attach(self, sink: Sink) -> None:
        self.sync()  # what was printed before belongs to no run
        with self._lock:
            self._sink = sink

    def detach(self) -> None:
        self.sync()
        with self._lock:
            self._sink = None

    def close(self) -> None:
        """The original descriptors back; the reader drains the pipe and ends."""
        self.detach()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(self._saved[0], 1)  # the pipe's last writers are gone: the reader sees its end
        os.dup2(self._saved[1], 2)
        self._reader.join(timeout=5)
        for fd in self._saved:
            os.close(fd)
        self.events.flush()
        self._console.flush()

