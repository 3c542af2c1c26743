"""python -m twin_trainer train|estimate|config|eval|compare-memory|export-gguf|worker|report|fetch-weights|check-pair — see configs/ and the README."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from . import environment
from .config import ConfigError, TrainConfig, load_config


def _train(arguments: argparse.Namespace) -> int:
    from .train import json_lines, train

    try:
        config = load_config(arguments.config, arguments.set)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stream = open(config.events, "a", encoding="utf-8") if config.events else sys.stdout
    emit = json_lines(stream)
    try:
        train(config, emit)
    except Exception as error:  # the run's last word, for whoever follows the events
        emit({"event": "failed", "reason": f"{type(error).__name__}: {error}"})
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        if stream is not sys.stdout:
            stream.close()
    return 0


def _estimate(arguments: argparse.Namespace) -> int:
    """The memory a config needs per GPU, from the base's shape alone; exit 1 when it cannot fit."""
    from .memory import GIB, MemoryBudgetError, describe
    from .train import memory_estimate

    try:
        config = load_config(arguments.config, arguments.set)
        estimate = memory_estimate(config, arguments.gpus)
    except (ConfigError, MemoryBudgetError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if estimate is None:
        print("no GPU memory to check against: set gpu_memory_gb, or run where a CUDA GPU is")
        return 0
    print(f"method={config.method} on {arguments.gpus} GPU(s): {describe(estimate)}")
    print(json.dumps({key: round(value / GIB, 2) for key, value in estimate.items()}))
    return 0


def _config(arguments: argparse.Namespace) -> int:
    """The resolved settings (defaults, then the config file, then the overrides) as one JSON object,
    keyed by the config's own key names: what twin (Node) reads instead of copying the defaults."""
    try:
        config = load_config(arguments.config, arguments.set)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(config), indent=2))
    return 0


def _eval(arguments: argparse.Namespace) -> int:
    """Held-out metrics of the base and of an adapter, without training."""
    import torch
    from peft import PeftModel

    from .data import check_chat_tokens, label_example, load_dataset
    from .evaluate import evaluate
    from .model import load_base, pick_device
    from .output import quiet_libraries
    from .train import eval_subset

    quiet_libraries()
    device = pick_device("auto")
    model, tokenizer = load_base(arguments.base, attn_implementation=TrainConfig.attn_implementation)
    check_chat_tokens(tokenizer)
    dataset = load_dataset(arguments.dataset, environment.database_url())
    examples = [label_example(e, tokenizer) for e in dataset.eval]
    examples = eval_subset([e for e in examples if e.supervised_tokens > 0], arguments.max_examples, 0)
    if not examples:
        print(f"error: dataset {arguments.dataset} has no held-out example with a trained turn", file=sys.stderr)
        return 1
    model = PeftModel.from_pretrained(model.to(device), arguments.adapter)
    with torch.no_grad():
        metrics = {
            "base": evaluate(model, examples, base=True, device=device),
            "tuned": evaluate(model, examples, device=device),
            "eval_examples": len(examples),
        }
    text = json.dumps(metrics, indent=2, ensure_ascii=False)
    if arguments.out:
        Path(arguments.out).write_text(text)
    print(text)
    return 0


def _compare_memory(arguments: argparse.Namespace) -> int:
    """Adapters trained with memory against adapters trained without, on the same held-out tokens."""
    import tempfile

    import torch
    from peft import PeftModel

    from . import database
    from .compare_memory import ComparisonError, compare, progress
    from .data import check_chat_tokens, load_dataset
    from .model import load_base, pick_device
    from .output import quiet_libraries
    from .run_adapter import RunAdapterError, checkout_adapter, run_base

    if len(arguments.plain_adapter) != len(arguments.memory_adapter):
        print("error: give as many --memory-adapter as --plain-adapter (the i-th of each is seed i)", file=sys.stderr)
        return 2
    quiet_libraries()
    url = environment.database_url()
    with tempfile.TemporaryDirectory(prefix="twin-compare-") as scratch:
        try:
            folders: dict[str, list[str]] = {"plain": [], "memory": []}
            base = arguments.base
            for arm, specs in (("plain", arguments.plain_adapter), ("memory", arguments.memory_adapter)):
                for spec in specs:
                    if spec.startswith("run:"):  # a finished run's adapter, from its stored checkpoint
                        if not url:
                            raise RunAdapterError(f"{spec}: set DATABASE_URL, the runs are in PostgreSQL")
                        with database.connect(url) as connection:
                            folders[arm].append(str(checkout_adapter(connection, int(spec[4:]), Path(scratch))))
                            base = base or run_base(connection, int(spec[4:]))
                    else:
                        folders[arm].append(spec)
            if not base:
                raise RunAdapterError("--base: the base the adapters were trained on")
            plain = load_dataset(arguments.plain_dataset, url).eval
            memory = load_dataset(arguments.memory_dataset, url).eval
            probe = json.loads(Path(arguments.probe).read_text())["examples"] if arguments.probe else None
            device = pick_device("auto")
            progress("loading the base model")
            model, tokenizer = load_base(base, attn_implementation=TrainConfig.attn_implementation)
            check_chat_tokens(tokenizer)
            names = {arm: [f"{arm}{i}" for i in range(len(folders[arm]))] for arm in folders}
            model = PeftModel.from_pretrained(model.to(device), folders["plain"][0], adapter_name=names["plain"][0])
            for arm in folders:
                for name, folder in zip(names[arm], folders[arm]):
                    if name not in model.peft_config:
                        model.load_adapter(folder, adapter_name=name)
            with torch.no_grad():
                result = compare(
                    model, tokenizer, plain, memory, names, probe,
                    resamples=arguments.resamples, seed=arguments.seed, max_examples=arguments.max_examples, device=device,
                )  # fmt: skip
        except (ComparisonError, RunAdapterError, FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if arguments.out:
        Path(arguments.out).write_text(text)
    print(text)
    return 0


def _export(arguments: argparse.Namespace) -> int:
    from .gguf_export import ExportError, export_adapter

    try:
        print(export_adapter(arguments.adapter, arguments.base, arguments.out))
    except (ExportError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _fetch_weights(arguments: argparse.Namespace) -> int:
    """A hub repository's safetensors, config and tokenizer into a folder; what arrived as JSON."""
    from .weights import WeightsError, fetch_weights

    try:
        record = fetch_weights(arguments.repo, Path(arguments.dest) if arguments.dest else None, arguments.revision)
    except (WeightsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(record))
    return 0


def _check_pair(arguments: argparse.Namespace) -> int:
    """Whether a GGUF and HF weights are the same model, as JSON; exit 1 naming the first mismatch."""
    from .pair import PairMismatch, check_pair

    try:
        report = check_pair(arguments.gguf, arguments.weights)
    except PairMismatch as error:
        print(json.dumps({"ok": False, "mismatch": str(error)}))
        print(f"error: not the same model: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_json()))
    return 0


def _worker(arguments: argparse.Namespace) -> int:
    from .output import OutputCapture
    from .worker import Worker, default_workdir

    if arguments.link:
        from .link import LinkError, read_secrets

        try:
            secrets = read_secrets(sys.stdin)
        except LinkError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        environment.adopt_link_secrets(secrets["database_url"], secrets.get("hf_token"))
    url = environment.database_url()
    if not url:
        print("error: set DATABASE_URL: the worker takes its runs from PostgreSQL", file=sys.stderr)
        return 2
    # stdout carries the JSON events alone; everything else a run prints goes to its log.
    capture = OutputCapture()
    worker = Worker(
        url,
        workdir=Path(arguments.workdir) if arguments.workdir else default_workdir(),
        heartbeat_seconds=arguments.heartbeat_seconds,
        stale_seconds=arguments.stale_seconds,
        out=capture.events,
        capture=capture,
        bases=Path(arguments.bases).expanduser() if arguments.bases else None,
    )
    if arguments.link:
        from .link import Link, leave_now

        Link(sys.stdin, on_stop=worker.shutdown, on_lost=leave_now).start()
    try:
        return worker.serve(
            until_idle=arguments.until_idle,
            once=arguments.once,
            poll_seconds=arguments.poll_seconds,
            target=arguments.target,
            methods=arguments.methods.split(",") if arguments.methods else None,
            idle_exit_seconds=arguments.idle_exit_seconds,
        )
    except ConnectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        capture.close()


def _report(arguments: argparse.Namespace) -> int:
    from .report import write_report

    url = environment.database_url()
    if not url:
        print("error: set DATABASE_URL: the evaluation's samples are in PostgreSQL", file=sys.stderr)
        return 2
    try:
        memory = json.loads(Path(arguments.memory_comparison).read_text()) if arguments.memory_comparison else None
        summary = write_report(url, arguments.evaluation, Path(arguments.out) if arguments.out else None, memory)
    except ConnectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # the evaluation says why it has no report
        from .database import fail_evaluation

        fail_evaluation(url, arguments.evaluation, f"report: {type(error).__name__}: {error}")
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"event": "report", "evaluation": arguments.evaluation, "turns": summary["turns"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    import os

    from .parent import follow_twin
    from .privacy import guard_output

    follow_twin()
    # Nothing printed may show a connection string or token, and everything written (datasets,
    # adapters, checkpoints, reports: people's messages) is readable by this user alone.
    guard_output()
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="python -m twin_trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="LoRA fine-tuning on a dataset (folder or postgres:<id>)")
    run.add_argument("--config", help="YAML config (see configs/)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    run.set_defaults(handler=_train)
    estimate = commands.add_parser("estimate", help="the memory a config needs per GPU (refused when it cannot fit)")
    estimate.add_argument("--config", help="YAML config (see configs/)")
    estimate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    estimate.add_argument("--gpus", type=int, default=1, help="processes the run is launched with (full: shards over them)")
    estimate.set_defaults(handler=_estimate)
    settings = commands.add_parser("config", help="print the resolved training settings (defaults, file, overrides) as JSON")
    settings.add_argument("--config", help="YAML config (see configs/); without it, the defaults")
    settings.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    settings.set_defaults(handler=_config)
    check = commands.add_parser("eval", help="held-out loss of the base and of an adapter")
    check.add_argument("--base", required=True, help="the base GGUF (or HF folder) the adapter was trained on")
    check.add_argument("--adapter", required=True, help="the adapter folder (output/adapter)")
    check.add_argument("--dataset", required=True, help="a dataset folder or postgres:<id>")
    check.add_argument("--max-examples", type=int, default=0, help="a fixed random subset (0: all)")
    check.add_argument("--out", help="also write the metrics here")
    check.set_defaults(handler=_eval)
    versus = commands.add_parser(
        "compare-memory", help="adapters trained with memory against without, on the same held-out tokens (JSON)"
    )
    versus.add_argument("--plain-dataset", required=True, help="the dataset built without memory (folder or postgres:<id>)")
    versus.add_argument("--memory-dataset", required=True, help="the same dataset built with memory")
    versus.add_argument(
        "--plain-adapter", action="append", default=[], required=True, help="an adapter folder or run:<id>, one per seed"
    )
    versus.add_argument(
        "--memory-adapter", action="append", default=[], required=True, help="an adapter folder or run:<id>, one per seed"
    )
    versus.add_argument("--base", help="the base the adapters were trained on (default: the first run's)")
    versus.add_argument("--probe", help="JSON of the 'knows the context' turns: {examples: {id: [trained segment ordinals]}}")
    versus.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    versus.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    versus.add_argument("--max-examples", type=int, default=0, help="a fixed random subset of the held-out pairs (0: all)")
    versus.add_argument("--out", help="also write the JSON here")
    versus.set_defaults(handler=_compare_memory)
    export = commands.add_parser("export-gguf", help="write a trained adapter as a GGUF LoRA for llama.cpp")
    export.add_argument("--adapter", required=True, help="the adapter folder (output/adapter)")
    export.add_argument("--base", required=True, help="the base GGUF the adapter was trained on")
    export.add_argument("--out", required=True, help="the .gguf file to write")
    export.set_defaults(handler=_export)
    report = commands.add_parser("report", help="measure an evaluation's samples: report, plots, figures")
    report.add_argument("--evaluation", type=int, required=True, help="the evaluation id `twin eval` made")
    report.add_argument("--out", help="also write report.md and the PNGs here")
    report.add_argument("--memory-comparison", help="the JSON compare-memory wrote: the report's memory section")
    report.set_defaults(handler=_report)
    fetch = commands.add_parser("fetch-weights", help="download a hub repository's safetensors weights (HF_ENDPOINT, HF_TOKEN)")
    fetch.add_argument("repo", help="the hub repository, <org>/<repo>")
    fetch.add_argument("--dest", help="the folder (default: <TWIN_MODEL_STORE or the cache>/hub/<org>/<repo>)")
    fetch.add_argument("--revision", help="a branch, tag or commit (default: main)")
    fetch.set_defaults(handler=_fetch_weights)
    pair = commands.add_parser("check-pair", help="check that a GGUF and HF weights are the same model (JSON)")
    pair.add_argument("gguf", help="the served GGUF (the first part of a split one)")
    pair.add_argument("weights", help="the HF folder (config.json, *.safetensors, tokenizer)")
    pair.set_defaults(handler=_check_pair)
    serve = commands.add_parser("worker", help="train the runs queued in PostgreSQL (DATABASE_URL)")
    serve.add_argument("--until-idle", action="store_true", help="exit when no queued run is left")
    serve.add_argument("--once", action="store_true", help="train at most one run, then exit")
    serve.add_argument("--poll-seconds", type=float, default=5.0, help="how often an idle worker looks for runs")
    serve.add_argument("--heartbeat-seconds", type=float, default=10.0, help="how often a running run's heartbeat beats")
    serve.add_argument(
        "--stale-seconds", type=float, default=60.0, help="a running run silent this long has lost its worker: re-queue it"
    )
    serve.add_argument("--workdir", help="local scratch folder (default: ~/.cache/twin/worker)")
    serve.add_argument(
        "--bases", help="a folder of base GGUFs sent by `twin worker remote` (<fingerprint>/<file>), used where a run's path is not here"
    )
    serve.add_argument(
        "--target", default="local", help="the runs it takes: those for `any` and for this (local, remote:<host>)"
    )
    serve.add_argument("--methods", help="only runs of these methods, comma-separated (lora,qlora: no full fine-tuning)")
    serve.add_argument(
        "--idle-exit-seconds", type=float, default=0, help="with --until-idle: how long the queue stays empty first"
    )
    serve.add_argument(
        "--link",
        action="store_true",
        help="started by `twin worker remote`: secrets on the first stdin line, then commands; stdin's end stops it",
    )
    serve.set_defaults(handler=_worker)
    arguments = parser.parse_args(argv)
    return arguments.handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
