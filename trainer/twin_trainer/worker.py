"""`python -m twin_trainer worker`: trains the runs queued in PostgreSQL, one at a time.

It needs only DATABASE_URL (plus the base model's files: the registered GGUF path, or its HF
source). Everything it makes goes back into the database: events as it trains, the latest
checkpoint (so another worker can resume), the GGUF adapter, the metrics and the loss chart.
A cancel from the bot becomes the trainer's STOP file; SIGTERM stops gracefully and re-queues.
Full fine-tuning is the exception: its checkpoints and its model are gigabytes, so they live in the
model store (TWIN_MODEL_STORE, a folder the workers and the bot share); the database keeps the
model's path, size and checksum. On several GPUs the worker launches one process per GPU.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import environment, run_queue
from .config import TrainConfig, load_config
from .database import connect
from .output import OutputCapture
from .parent import die_with_parent
from .privacy import private_dir

TRAINER = Path(__file__).resolve().parents[1]
CONFIGS = TRAINER / "configs"


def model_store() -> Path:
    """Where full models and their checkpoints go: shared with the bot (and other workers)."""
    store = environment.model_store()
    if store is None:
        raise FileNotFoundError(
            "method=full needs TWIN_MODEL_STORE: a folder this worker and the bot share (a volume in compose)"
        )
    return store


def processes_for(config: TrainConfig, facts: dict[str, Any]) -> int:
    """Full fine-tuning spreads over every GPU (or `processes`); LoRA trains in this process."""
    if config.method != "full":
        return 1
    return config.processes or max(1, len(facts.get("gpus") or []))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(16 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def train_in_processes(config: TrainConfig, processes: int, emit: Any, poll_seconds: float = 1.0) -> dict[str, Any]:
    """`train` over `processes` processes (torchrun), its events followed from the file rank 0 writes."""
    import yaml

    output = Path(config.output)
    events = output / "events.jsonl"
    events.unlink(missing_ok=True)
    launch = output / "launch.yaml"
    launch.write_text(yaml.safe_dump({**asdict(config), "events": str(events)}))
    log = output / "launch.log"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "twin_trainer", "train", "--config", str(launch)]  # fmt: skip
    last: dict[str, Any] = {}
    with log.open("wb") as log_file:
        # Its processes read the dataset from PostgreSQL: a link's URL is handed to them alone.
        process = subprocess.Popen(
            command,
            cwd=TRAINER,
            env=environment.environment_with_secrets(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        read = relayed = 0
        while True:
            finished = process.poll() is not None
            if events.exists():
                with events.open("rb") as file:
                    file.seek(read)
                    while (line := file.readline()).endswith(b"\n"):  # a line still being written waits
                        read += len(line)
                        last = {k: v for k, v in json.loads(line).items() if k != "time"}
                        emit(last)
            # What the processes print goes on to this worker's stderr: the run's log, not a terminal.
            with log.open("rb") as file:
                file.seek(relayed)
                while (line := file.readline()).endswith(b"\n") or (finished and line):
                    relayed += len(line)
                    sys.stderr.write(line.decode("utf-8", errors="replace"))
            if finished:
                break
            time.sleep(poll_seconds)
    if last.get("event") == "done":
        return {"stopped": False, "step": last["step"], "metrics": json.loads((output / "metrics.json").read_text())}
    if last.get("event") == "stopped":
        return {"stopped": True, "step": last["step"]}
    reason = last.get("reason") or log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{processes} training processes exited with {process.returncode}: {reason}")


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


def is_here(path: str | Path) -> bool:
    """Whether a file is on this worker and readable by it: a path into another user's home (the
    owner's, named by a run a remote took) raises PermissionError from Path.is_file on Python 3.11."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def check_base(run: run_queue.Run, method: str) -> None:
    """A base GGUF here must be the registered one: the adapter is exported against it. Without it,
    a LoRA run trains on the base's HF weights and stamps the adapter with the run's fingerprint;
    full fine-tuning rewrites the GGUF itself, so it needs it."""
    from .gguf_export import base_fingerprint

    gguf = Path(run.base_gguf)
    if not is_here(gguf):
        if run.base_hf and method != "full":
            return
        needs = "method=full rewrites the base GGUF" if run.base_hf else "the base has no HF weights registered"
        raise FileNotFoundError(
            f"base {run.base_name}: {gguf} is not on this worker ({needs}); mount the models folder at the same path"
        )
    if base_fingerprint(gguf) != run.base_fingerprint:
        raise ValueError(f"base {run.base_name}: {gguf} on this worker is not the registered model (fingerprint differs)")


def sent_base(run: run_queue.Run, bases: Path | None) -> run_queue.Run:
    """The run with its base GGUF where `twin worker remote` sent it (`<bases>/<fingerprint>/<its
    file names>`), when the registered path is on the owner's machine only; check_base then checks
    the copy's fingerprint."""
    if bases is None or is_here(run.base_gguf):
        return run
    sent = bases / run.base_fingerprint / Path(run.base_gguf).name
    return replace(run, base_gguf=str(sent)) if sent.is_file() else run


def failure_reason(error: BaseException, step: int | None, host: str) -> str:
    """A failed run's reason, naming the machine and the step, and what to do for the failures an
    owner can fix: out of GPU memory, a full disk."""
    where = f"on {host}" + (f" at step {step}" if step is not None else " before training")
    if type(error).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(error):
        return f"out of GPU memory {where}: lower tokens_per_batch, or train with QLoRA ({error})"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"disk full {where}{f' writing {error.filename}' if error.filename else ''}: free some space there"
    return f"{type(error).__name__} {where}: {error}"


class WeightsMismatch(ValueError):
    """The weights fetched here are not those `twin model pull` checked against the served GGUF."""


def base_weights(run: run_queue.Run, log: Any = sys.stderr) -> Path:
    """The run's HF weights on this worker (a hub id is fetched once into the model store, at the
    commit pinned at pull time), checked to be the served model: against the GGUF where that is here
    too, else against the fingerprint the pull recorded after its own check. One model, or the run
    fails saying where they differ."""
    from .pair import check_pair
    from .weights import fingerprint_of, resolve_weights

    folder = resolve_weights(str(run.base_hf), revision=run.base_hf_revision, log=log)
    if is_here(run.base_gguf):
        check_pair(run.base_gguf, folder)
    elif run.base_weights_fingerprint:
        found = fingerprint_of(folder)
        if found != run.base_weights_fingerprint:
            at = f"@{run.base_hf_revision[:12]}" if run.base_hf_revision else ""
            raise WeightsMismatch(
                f"base {run.base_name}: the weights {run.base_hf}{at} here are not the ones checked against its GGUF "
                f"at pull time (fingerprint {found[:12]}…, recorded {run.base_weights_fingerprint[:12]}…): "
                f"delete {folder} to fetch them again, or pull the model again"
            )
    else:
        print(
            f"base {run.base_name}: no pair check was recorded at pull time and its GGUF is not here: "
            f"{run.base_hf} is trusted to be the same model (pull it with --weights to record one)",
            file=log,
            flush=True,
        )
    return folder


def export_base(run: run_queue.Run, weights: str) -> Any:
    """What the adapter is exported against: the GGUF where it is here, else the weights with the run's fingerprint."""
    from .pair import describe_weights

    if is_here(run.base_gguf):
        return run.base_gguf
    return describe_weights(weights, run.base_architecture, run.base_fingerprint)


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


class RunLog(threading.Thread):
    """A run's own output (what it printed that is not an event: library warnings and notices,
    tracebacks), stored as its `log_line` events every `every` seconds on a connection of its own,
    so a follower sees it live and a failed run keeps its traceback. At most MAX_LINES an attempt."""

    MAX_LINES = 5000
    MAX_CHARS = 2000

    def __init__(self, url: str, run_id: int, every: float = 1.0):
        super().__init__(daemon=True, name=f"run-log-{run_id}")
        self.url, self.run_id, self.every = url, run_id, every
        self.pending: list[str] = []
        self.kept = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def add(self, line: str) -> None:
        with self.lock:
            if self.kept >= self.MAX_LINES:
                self.dropped += 1
                return
            self.kept += 1
            self.pending.append(line if len(line) <= self.MAX_CHARS else line[: self.MAX_CHARS] + " …")

    def _flush(self, connection: Any) -> None:
        with self.lock:
            lines, self.pending = self.pending, []
        run_queue.add_log_lines(connection, self.run_id, lines)

    def run(self) -> None:
        try:
            with connect(self.url) as connection:
                while not self.finished.wait(self.every):
                    self._flush(connection)
                self._flush(connection)
                if self.dropped:
                    note = f"… {self.dropped} more lines were not stored (at most {self.MAX_LINES} an attempt)"
                    run_queue.add_log_lines(connection, self.run_id, [note])
        except Exception:  # the database is gone: the run fails on its own connection and says so
            pass

    def stop(self) -> None:
        self.finished.set()
        if self.is_alive():
            self.join()


class Worker:
    def __init__(
        self,
        url: str,
        *,
        workdir: Path,
        heartbeat_seconds: float,
        stale_seconds: float,
        out=sys.stdout,
        capture: OutputCapture | None = None,
        bases: Path | None = None,
    ):
        self.url = url
        self.bases = bases  # where a remote keeps the base GGUFs sent over its link
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self.out = out
        # Descriptors 1 and 2 into a pipe (output.py): a run's output goes to its log, not the terminal.
        self.capture = capture
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # This worker's own folder: workers of other databases on the machine number their runs
        # from 1 too, and must never share (or delete) each other's run folders.
        self.scratch = workdir / self.id.replace(":", "-")
        self.shutting_down = False
        self.current_stop: Path | None = None

    def say(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")
        self.out.flush()

    def phase(self, connection: Any, run: run_queue.Run, name: str, **details: Any) -> None:
        """What the run does now, outside training (fetching the weights, exporting, storing), for the bar and the estimate."""
        event = {"event": "phase", "phase": name, **details}
        self.say({"run": run.id, **event})
        run_queue.add_event(connection, run.id, event)

    def start_log(self, run_id: int) -> RunLog | None:
        if self.capture is None:
            return None
        log = RunLog(self.url, run_id)
        log.start()
        self.capture.attach(log.add)
        return log

    def stop_log(self, log: RunLog | None) -> None:
        """Every line printed so far stored, then the output goes back to the worker's console."""
        if log is None or self.capture is None:
            return
        self.capture.detach()
        log.stop()

    def shutdown(self, *_: Any) -> None:
        """SIGTERM/SIGINT: the current run stops at its next step with a checkpoint and goes back to the queue."""
        self.shutting_down = True
        if self.current_stop is not None:
            self.current_stop.touch()

    def serve(
        self,
        *,
        until_idle: bool,
        once: bool,
        poll_seconds: float,
        target: str = "local",
        methods: list[str] | None = None,
        idle_exit_seconds: float = 0,
    ) -> int:
        """Trains claimed runs one after another. `until_idle`: exits once the queue has had nothing
        for this worker for `idle_exit_seconds`."""
        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        with connect(self.url) as connection:
            facts = hardware()
            run_queue.register_worker(connection, self.id, socket.gethostname(), os.getpid(), facts)
            self.say({"event": "worker", "worker": self.id, "hardware": facts, "target": target, "methods": methods})
            idle_since = time.monotonic()
            try:
                while not self.shutting_down:
                    for run_id, silent, status in run_queue.requeue_stale(connection, self.stale_seconds):
                        self.say({"event": "requeued" if status == "queued" else "failed", "run": run_id, "silent_worker": silent})
                    run = run_queue.claim(connection, self.id, target, bool(facts["gpus"]), methods)
                    if run is None:
                        if once or (until_idle and time.monotonic() - idle_since >= idle_exit_seconds):
                            break
                        run_queue.worker_heartbeat(connection, self.id)
                        time.sleep(poll_seconds)
                        continue
                    self.process(connection, run)
                    idle_since = time.monotonic()
                    if once:
                        break
            finally:
                run_queue.worker_heartbeat(connection, self.id, stopped=True)
                shutil.rmtree(self.scratch, ignore_errors=True)
        return 0

    def process(self, connection: Any, run: run_queue.Run) -> None:
        from .train import train

        heartbeat: Heartbeat | None = None
        output: Path | None = None
        full = False
        keep = False  # a full run that goes back to the queue keeps its checkpoints in the store
        step: int | None = None  # the last step the run reached, for a failure's reason
        self.say({"event": "claimed", "run": run.id, "attempt": run.attempts})
        run = sent_base(run, self.bases)
        log = self.start_log(run.id)
        try:
            config = run_config(run, self.scratch / f"run-{run.id}")
            full = config.method == "full"
            check_base(run, config.method)
            if full:
                config.output = str(model_store() / f"run-{run.id}")
            output = Path(config.output)
            if not full:
                shutil.rmtree(output, ignore_errors=True)  # the database holds the truth: start from its checkpoint
            private_dir(output)
            self.current_stop = output / "STOP"
            self.current_stop.unlink(missing_ok=True)
            if self.shutting_down:
                self.current_stop.touch()
            heartbeat = Heartbeat(self.url, run.id, self.id, self.heartbeat_seconds, self.current_stop)
            heartbeat.start()
            if run.base_hf:  # fetched here on first use, under the heartbeat: a 7B model takes a while
                self.phase(connection, run, "loading", weights=run.base_hf)
                config.base = str(base_weights(run))

            def emit(event: dict[str, Any]) -> None:
                nonlocal step
                step = event.get("step", event.get("resumed_from", step))
                self.say({"run": run.id, **event})
                if event["event"] == "start":
                    run_queue.forget_steps_after(connection, run.id, event["resumed_from"])
                run_queue.add_event(connection, run.id, event)
                if event["event"] == "start":
                    run_queue.record_progress(connection, run.id, event["resumed_from"], event["steps"])
                elif event["event"] == "log":
                    run_queue.record_progress(connection, run.id, event["step"], event["max_steps"])
                elif event["event"] == "checkpoint" and not full:
                    data = run_queue.tar_folder(Path(event["path"]))
                    run_queue.put_file(connection, run.id, "checkpoint", data, event["step"])

            if not full:
                stored = run_queue.latest_checkpoint(connection, run.id)
                if stored is not None:
                    run_queue.untar_into(run_queue.get_file(connection, stored[0]), output)
            processes = processes_for(config, hardware())
            result = train_in_processes(config, processes, emit) if processes > 1 else train(config, emit)
            heartbeat.stop()
            if heartbeat.lost:
                keep = True
                self.say({"event": "lost", "run": run.id})
            elif result["stopped"]:
                cancelled = heartbeat.cancelled or run_queue.run_heartbeat(connection, run.id, self.id)[1]
                keep = not cancelled
                run_queue.finish(connection, run, self.id, "cancelled" if cancelled else "queued")
            elif full:
                keep = self.publish_full(connection, run, output, result["metrics"], config.export_type)
            else:
                self.publish(connection, run, output, result["metrics"], config.base)
        except Exception as error:  # the run's last word, for whoever follows it
            if heartbeat is not None:
                heartbeat.stop()
            traceback.print_exc()  # into the run's log, stored before the run is marked failed
            self.stop_log(log)
            log = None
            reason = failure_reason(error, step, socket.gethostname())
            self.say({"event": "failed", "run": run.id, "reason": reason})
            run_queue.finish(connection, run, self.id, "failed", reason)
            keep = False
        finally:
            self.stop_log(log)
            self.current_stop = None
            if output is not None and not (full and keep):  # LoRA checkpoints are in the database
                shutil.rmtree(output, ignore_errors=True)

    def chart(self, connection: Any, run: run_queue.Run, metrics: dict[str, Any]) -> None:
        from .charts import loss_chart

        points = run_queue.loss_points(connection, run.id)
        base_loss = metrics.get("base", {}).get("overall", {}).get("loss") if metrics else None
        svg, png = loss_chart(points["train"], points["eval"], title=f"Run {run.id}: loss per step", base_eval_loss=base_loss)
        run_queue.put_file(connection, run.id, "chart_svg", svg)
        run_queue.put_file(connection, run.id, "chart_png", png)

    def publish(self, connection: Any, run: run_queue.Run, output: Path, metrics: dict[str, Any], base: str) -> None:
        """The GGUF adapter, the chart and the metrics into the database; the adapter becomes active."""
        from .gguf_export import export_adapter

        self.phase(connection, run, "exporting")
        gguf = export_adapter(output / "adapter", export_base(run, base), output / "adapter.gguf")
        self.phase(connection, run, "storing")
        adapter_file = run_queue.put_file(connection, run.id, "adapter_gguf", gguf.read_bytes())
        self.chart(connection, run, metrics)
        adapter = run_queue.succeed(connection, run, self.id, adapter_file, metrics, f"run-{run.id}")
        self.say({"event": "published", "run": run.id, "adapter": adapter})

    def publish_full(self, connection: Any, run: run_queue.Run, output: Path, metrics: dict[str, Any], export_type: str) -> bool:
        """The whole model as a GGUF in the store (checkpoints and fp32 weights removed), its facts in the database.

        True when the model stays in the store (it is published); False when the run is no longer
        this worker's or was cancelled meanwhile, and the folder can go.
        """
        from .gguf_export import export_full_model

        self.phase(connection, run, "exporting")
        gguf = export_full_model(output / "model", run.base_gguf, output / f"model-{export_type}.gguf", export_type)
        self.phase(connection, run, "storing")
        for leftover in [*output.glob("checkpoint-*"), output / "model"]:
            shutil.rmtree(leftover, ignore_errors=True)
        stored = run_queue.StoredModel(
            path=f"{output.name}/{gguf.name}", sha256=sha256_of(gguf), bytes=gguf.stat().st_size
        )
        self.chart(connection, run, metrics)
        model = run_queue.succeed(connection, run, self.id, stored, metrics, f"run-{run.id}")
        self.say({"event": "published", "run": run.id, "model": model, "path": stored.path, "bytes": stored.bytes})
        return model is not None


def default_workdir() -> Path:
    return environment.cache_dir() / "worker"
