"""`python -m twin_trainer worker`: trains the runs queued in PostgreSQL, one at a time.

It needs only DATABASE_URL (plus the base model's files: the registered GGUF path, or its HF
source). Everything it makes goes back into the database: events as it trains, the latest
checkpoint (so another worker can resume), the GGUF adapter, the metrics and the loss chart.
A cancel from the bot becomes the trainer's STOP file; SIGTERM stops gracefully and re-queues.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from . import run_queue
from .config import TrainConfig, load_config
from .database import connect

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def hardware() -> dict[str, Any]:
    """What this worker trains on, for the bot to show and for choosing a method."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            gpus.append({"name": properties.name, "memory_gb": round(properties.total_memory / 2**30, 1)})
    memory_gb = None
    try:
        with open("/proc/meminfo") as meminfo:
            memory_gb = round(int(meminfo.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "device": "cuda" if gpus else "cpu",
        "gpus": gpus,
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "torch": torch.__version__,
    }


def run_config(run: run_queue.Run, output: Path) -> TrainConfig:
    """The run's config file and overrides, with its base, dataset and output filled in."""
    file = str(run.config.get("file") or "")
    path = (CONFIGS / file) if file else None
    if path is not None and (path.parent != CONFIGS or not path.is_file()):
        raise FileNotFoundError(f"run {run.id}: config {file!r} is not a file in {CONFIGS}")
    overrides = [f"{key}={value}" for key, value in (run.config.get("set") or {}).items()]
    config = load_config(str(path) if path else None, overrides)
    config.base = run.base_hf or run.base_gguf
    config.dataset = f"postgres:{run.dataset_id}"
    config.output = str(output)
    config.events = ""
    return config


def check_base(run: run_queue.Run) -> None:
    """The base GGUF here must be the registered one: the adapter is exported against it."""
    from .gguf_export import base_fingerprint

    gguf = Path(run.base_gguf)
    if not gguf.is_file():
        raise FileNotFoundError(
            f"base {run.base_name}: {gguf} is not on this worker; mount the models folder at the same path"
        )
    if base_fingerprint(gguf) != run.base_fingerprint:
        raise ValueError(f"base {run.base_name}: {gguf} on this worker is not the registered model (fingerprint differs)")


class Heartbeat(threading.Thread):
    """Beats the run's and the worker's heartbeat on its own connection; turns a cancel into STOP."""

    def __init__(self, url: str, run_id: int, worker_id: str, every: float, stop_file: Path):
        super().__init__(daemon=True)
        self.url, self.run_id, self.worker_id, self.every, self.stop_file = url, run_id, worker_id, every, stop_file
        self.finished = threading.Event()
        self.cancelled = False
        self.lost = False

    def run(self) -> None:
        with connect(self.url) as connection:
            while not self.finished.wait(self.every):
                ours, cancel = run_queue.run_heartbeat(connection, self.run_id, self.worker_id)
                run_queue.worker_heartbeat(connection, self.worker_id)
                self.cancelled |= cancel
                self.lost |= not ours
                if cancel or not ours:
                    self.stop_file.touch()

    def stop(self) -> None:
        self.finished.set()
        if self.is_alive():
            self.join()


class Worker:
    def __init__(self, url: str, *, workdir: Path, heartbeat_seconds: float, stale_seconds: float, out=sys.stdout):
        self.url = url
        self.workdir = workdir
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self.out = out
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.shutting_down = False
        self.current_stop: Path | None = None

    def say(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")
        self.out.flush()

    def shutdown(self, *_: Any) -> None:
        """SIGTERM/SIGINT: the current run stops at its next step with a checkpoint and goes back to the queue."""
        self.shutting_down = True
        if self.current_stop is not None:
            self.current_stop.touch()

    def serve(self, *, until_idle: bool, once: bool, poll_seconds: float) -> int:
        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        with connect(self.url) as connection:
            facts = hardware()
            run_queue.register_worker(connection, self.id, socket.gethostname(), os.getpid(), facts)
            self.say({"event": "worker", "worker": self.id, "hardware": facts})
            try:
                while not self.shutting_down:
                    for run_id, silent, status in run_queue.requeue_stale(connection, self.stale_seconds):
                        self.say({"event": "requeued" if status == "queued" else "failed", "run": run_id, "silent_worker": silent})
                    run = run_queue.claim(connection, self.id)
                    if run is None:
                        if until_idle or once:
                            break
                        run_queue.worker_heartbeat(connection, self.id)
                        time.sleep(poll_seconds)
                        continue
                    self.process(connection, run)
                    if once:
                        break
            finally:
                run_queue.worker_heartbeat(connection, self.id, stopped=True)
        return 0

    def process(self, connection: Any, run: run_queue.Run) -> None:
        from .train import train

        output = self.workdir / f"run-{run.id}"
        shutil.rmtree(output, ignore_errors=True)  # the database holds the truth: start from its checkpoint
        output.mkdir(parents=True)
        self.current_stop = output / "STOP"
        if self.shutting_down:
            self.current_stop.touch()
        heartbeat = Heartbeat(self.url, run.id, self.id, self.heartbeat_seconds, self.current_stop)
        heartbeat.start()
        self.say({"event": "claimed", "run": run.id, "attempt": run.attempts})

        def emit(event: dict[str, Any]) -> None:
            self.say({"run": run.id, **event})
            run_queue.add_event(connection, run.id, event)
            if event["event"] == "start":
                run_queue.record_progress(connection, run.id, event["resumed_from"], event["steps"])
            elif event["event"] == "log":
                run_queue.record_progress(connection, run.id, event["step"], event["max_steps"])
            elif event["event"] == "checkpoint":
                data = run_queue.tar_folder(Path(event["path"]))
                run_queue.put_file(connection, run.id, "checkpoint", data, event["step"])

        try:
            check_base(run)
            config = run_config(run, output)
            stored = run_queue.latest_checkpoint(connection, run.id)
            if stored is not None:
                run_queue.untar_into(run_queue.get_file(connection, stored[0]), output)
            result = train(config, emit)
            heartbeat.stop()
            if heartbeat.lost:
                self.say({"event": "lost", "run": run.id})
            elif result["stopped"]:
                cancelled = heartbeat.cancelled or run_queue.run_heartbeat(connection, run.id, self.id)[1]
                run_queue.finish(connection, run, self.id, "cancelled" if cancelled else "queued")
            else:
                self.publish(connection, run, output, result["metrics"])
        except Exception as error:  # the run's last word, for whoever follows it
            heartbeat.stop()
            reason = f"{type(error).__name__}: {error}"
            self.say({"event": "failed", "run": run.id, "reason": reason})
            run_queue.finish(connection, run, self.id, "failed", reason)
        finally:
            self.current_stop = None
            shutil.rmtree(output, ignore_errors=True)

    def publish(self, connection: Any, run: run_queue.Run, output: Path, metrics: dict[str, Any]) -> None:
        """The GGUF adapter, the chart and the metrics into the database; the adapter becomes active."""
        from .charts import loss_chart
        from .gguf_export import export_adapter

        gguf = export_adapter(output / "adapter", run.base_gguf, output / "adapter.gguf")
        adapter_file = run_queue.put_file(connection, run.id, "adapter_gguf", gguf.read_bytes())
        points = run_queue.loss_points(connection, run.id)
        base_loss = metrics.get("base", {}).get("overall", {}).get("loss") if metrics else None
        svg, png = loss_chart(points["train"], points["eval"], title=f"Run {run.id}: loss per step", base_eval_loss=base_loss)
        run_queue.put_file(connection, run.id, "chart_svg", svg)
        run_queue.put_file(connection, run.id, "chart_png", png)
        adapter = run_queue.succeed(connection, run, self.id, adapter_file, metrics, f"run-{run.id}")
        self.say({"event": "published", "run": run.id, "adapter": adapter})


def default_workdir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twin" / "worker"
