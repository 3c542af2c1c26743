"""The trainer's processes never outlive the process that started them.

Linux's parent-death signal reaches a child when its parent dies, even by SIGKILL (an out-of-memory
kill, `kill -9`), so no orphaned training goes on writing a run another worker may have resumed.
"""

from __future__ import annotations

import os
import signal

from .environment import take_parent_pid


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """`sig` to this process when its parent dies (a `preexec_fn`, or called first thing)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent still stops its children when it stops normally


def follow_twin() -> None:
    """Started by twin (TWIN_PARENT_PID): killed the moment twin dies. The run it held goes back to
    the queue once its heartbeat is stale, and resumes from its last stored checkpoint; a training
    launched from here (torchrun) dies with this process in turn. The variable is not passed on."""
    parent = take_parent_pid()
    if parent is None:
        return
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # twin died before the signal was armed
        os._exit(1)
