"""A trainer process twin started dies with twin, even when twin is killed with SIGKILL: its
output going to a file (no broken pipe to end it), a training left alone would go on."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import smollm2_gguf
from test_train import write_dataset


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1].split(" ")[0] != "Z"  # a zombie has ended


def test_a_training_started_by_twin_dies_when_twin_is_killed(tmp_path):
    write_dataset(tmp_path / "data", n_train=64)
    log = tmp_path / "train.log"
    train = [sys.executable, "-m", "twin_trainer", "train", "--set", f"base={smollm2_gguf()}", "--set",
             f"dataset={tmp_path / 'data'}", "--set", f"output={tmp_path / 'run'}", "--set", "max_steps=100000",
             "--set", "tokens_per_batch=64", "--set", "eval_every=0", "--set", "save_every=0"]  # fmt: skip
    # Stands in for twin: starts the trainer as twin does (TWIN_PARENT_PID), writes its pid, waits.
    twin = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        f"log = open({str(log)!r}, 'w')\n"
        f"child = subprocess.Popen({train!r}, stdout=log, stderr=log, cwd={str(Path(__file__).parents[1])!r},\n"
        "                         env={**os.environ, 'TWIN_PARENT_PID': str(os.getpid())})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )], stdout=subprocess.PIPE, text=True)  # fmt: skip
    trainer = int(twin.stdout.readline())
    try:
        deadline = time.time() + 120
        while '"event": "log"' not in log.read_text() and time.time() < deadline:
            assert alive(trainer), log.read_text()[-2000:]
            time.sleep(0.2)
        assert '"event": "log"' in log.read_text(), "the training is under way"
        twin.kill()  # SIGKILL: twin gets no chance to stop anything
        twin.wait()
        killed = time.time()
        while alive(trainer) and time.time() - killed < 5:
            time.sleep(0.1)
        assert not alive(trainer), "the trainer outlived twin by more than 5 s"
    finally:
        if alive(trainer):
            os.kill(trainer, signal.SIGKILL)
