"""What a worker prints that is not an event stays off its stdout: a run's output (warnings, progress
bars, native writes, tracebacks) goes to that run's log, and the rest to the worker's stderr."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit  # a subprocess printing: no database, no model

SCRIPT = r"""
import json, os, sys, warnings
from twin_trainer.output import OutputCapture
from twin_trainer.privacy import guard_output

guard_output()
capture = OutputCapture()
print("before any run")
run_log = []
capture.attach(run_log.append)
print("a library notice")
warnings.warn("is_gradient_checkpointing is deprecated")
os.write(2, b"[W native] written past sys.stderr\n")
os.write(1, b"Loading weights:  50%|#####     | 1/2\rLoading weights: 100%|##########| 2/2\n")
sys.stderr.write("postgres://alice:Sup3r-Secret@db/twin\n")
capture.events.write(json.dumps({"event": "log", "step": 1}) + "\n")
capture.detach()
print("between runs")
capture.close()
print(json.dumps(run_log))
"""


def test_a_run_s_output_goes_to_its_log_and_stdout_carries_events_alone():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    stdout = done.stdout.splitlines()
    assert stdout[0] == '{"event": "log", "step": 1}', "the events' channel is the original stdout"
    run_log = json.loads(stdout[-1])  # printed after close(): the descriptors are back
    assert len(stdout) == 2, f"nothing else on stdout: {stdout}"
    assert run_log[0] == "a library notice"
    assert any("UserWarning: is_gradient_checkpointing is deprecated" in line for line in run_log), run_log
    assert "[W native] written past sys.stderr" in run_log, "native writes to the descriptor are caught too"
    assert [line for line in run_log if line.startswith("Loading weights")] == [
        "Loading weights:  50%|#####     | 1/2",
        "Loading weights: 100%|##########| 2/2",
    ], "a bar's redraws are lines of their own"
    assert "postgres://[redacted]" in run_log and not any("Sup3r" in line for line in run_log), run_log
    assert done.stderr.splitlines() == ["before any run", "between runs"], "outside a run: the worker's stderr"
