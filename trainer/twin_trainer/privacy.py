"""What the trainer shows and writes stays private.

Connection strings carry passwords, and tokens are credentials: nothing the trainer prints may
show one. `redact` cleans a text; `guard_output` makes every later write to stdout and stderr
(prints, tracebacks, warnings) go through it, whatever raised or printed. Datasets, adapters,
checkpoints and reports hold people's messages: `private_dir` makes the folders they go in
readable by this user alone (the trainer's umask does the same for each file)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, TextIO

from .environment import database_url, hf_token

REDACTED = "[redacted]"

# Any URL that carries a user or password (scheme://user:password@host…), and any postgres URL whole.
_URL_WITH_USER = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"<>/@]*@[^\s'\"<>]*")
_POSTGRES_URL = re.compile(r"\b(postgres(?:ql)?://)[^\s'\"<>]*")
# libpq's keyword form: password=… (quoted or not).
_PASSWORD_KEYWORD = re.compile(r"\b(password|passwd)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"://[^\s:/@]*:([^\s@]+)@")


def _secret_values() -> list[str]:
    """Secrets this process holds (the database password, the Hugging Face token), longest first."""
    values = []
    for match in _URL_PASSWORD.finditer(database_url() or ""):
        values.append(match.group(1))
    values.append(hf_token() or "")
    return sorted({value for value in values if len(value) >= 4}, key=len, reverse=True)


def redact(text: str) -> str:
    """The text with every connection string, URL credential, password keyword and known secret replaced."""
    text = _POSTGRES_URL.sub(lambda m: m.group(1) + REDACTED, text)
    text = _URL_WITH_USER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PASSWORD_KEYWORD.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    for secret in _secret_values():
        text = text.replace(secret, REDACTED)
    return text


class _RedactingStream:
    """A text stream that redacts what is written to it; everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redacting(stream: TextIO) -> TextIO:
    """`stream`, redacting what is written to it (a stream opened after `guard_output`)."""
    return stream if isinstance(stream, _RedactingStream) else _RedactingStream(stream)  # type: ignore[return-value]


def guard_output() -> None:
    """Redacts everything this process writes to stdout and stderr from now on (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _RedactingStream):
            setattr(sys, name, _RedactingStream(stream))


def private_dir(path: Path) -> Path:
    """Creates `path` (and its parents) if needed, and makes it 0700 even when it already existed."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
