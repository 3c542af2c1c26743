"""python -m twin_trainer train --config configs/smollm2-135m-lora-cpu.yaml --set key=value …"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

from .train import TrainConfig, json_lines, train


def load_config(path: str | None, overrides: list[str]) -> TrainConfig:
    """A YAML config (every key a TrainConfig field), then `key=value` overrides on top."""
    values = yaml.safe_load(Path(path).read_text()) if path else {}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = set(values or {}) - set(fields)
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(fields)}")
    config = TrainConfig(**(values or {}))
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {override}: expected key=value with a key among {sorted(fields)}")
        current = getattr(config, key)
        setattr(config, key, type(current)(yaml.safe_load(raw)) if current is not None else yaml.safe_load(raw))
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin_trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="LoRA fine-tuning on a dataset folder")
    run.add_argument("--config", help="YAML config (see configs/)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    export = commands.add_parser("export-gguf", help="write a trained adapter as a GGUF LoRA for llama.cpp")
    export.add_argument("--adapter", required=True, help="the adapter folder (output/adapter)")
    export.add_argument("--base", required=True, help="the base GGUF the adapter was trained on")
    export.add_argument("--out", required=True, help="the .gguf file to write")
    arguments = parser.parse_args(argv)
    if arguments.command == "export-gguf":
        from .gguf_export import export_adapter

        print(export_adapter(arguments.adapter, arguments.base, arguments.out))
        return 0
    if arguments.command == "train":
        emit = json_lines()
        try:
            train(load_config(arguments.config, arguments.set), emit)
        except Exception as error:  # the run's last word, for whoever follows the events
            emit({"event": "failed", "reason": f"{type(error).__name__}: {error}"})
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
