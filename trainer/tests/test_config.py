import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from twin_trainer.config import ConfigError, TrainConfig, load_config
from twin_trainer.model import HardwareError, quantization_for

pytestmark = pytest.mark.unit  # pure: no database, no model; `npm run test:unit` runs it

TRAINER = Path(__file__).resolve().parents[1]


def test_overrides_are_typed_and_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lora_r: 8\nbatching: padded\n")
    config = load_config(str(path), ["lora_r=32", "learning_rate=1e-4", "use_rslora=true", "gradient_checkpointing=off"])
    assert (config.lora_r, config.learning_rate, config.use_rslora) == (32, 1e-4, True)
    assert config.batching == "padded" and config.gradient_checkpointing == "off"


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("lora_rank: 8\n", [], "unknown keys \\['lora_rank'\\]"),
        ("", ["lora_r=abc"], "lora_r=abc: expected an integer"),
        ("", ["use_rslora=3"], "expected true or false"),
        ("", ["batching=sorted"], "batching='sorted'"),
        ("", ["method=dora"], "method='dora'"),
        ("", ["export_type=q4"], "export_type='q4'"),
        ("", ["nonsense"], "expected key=value"),
        ("lora_r: [1\n", [], "cannot be read as YAML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path), overrides)


def test_qlora_is_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert quantization_for("lora", torch.device("cpu")) is None
    with pytest.raises(HardwareError, match="qlora needs a CUDA GPU"):
        quantization_for("qlora", torch.device("cpu"))


def test_the_cli_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    from twin_trainer.__main__ import main

    assert main(["train", "--set", "lora_r=zero"]) == 2
    assert "lora_r=zero: expected an integer" in capsys.readouterr().err
    assert TrainConfig().check().method == "lora"


# The settings twin (Node) reads from `python -m twin_trainer config` instead of copying the
# defaults (src/training/plan.ts); their names are the config's keys and must not change.
PRINTED_KEYS = [
    "base", "dataset", "output", "method", "lora_r", "lora_alpha", "lora_dropout", "use_rslora", "use_dora",
    "learning_rate", "warmup_ratio", "epochs", "max_steps", "max_trained_tokens", "tokens_per_batch", "batching", "eval_every",
    "max_eval_examples", "save_every", "seed", "attn_implementation", "loss_implementation", "compile_layers", "device",
    "dtype", "gradient_checkpointing",
    "gpu_memory_gb", "processes", "export_type", "events",
]  # fmt: skip


def test_the_config_command_prints_the_defaults_as_json_under_stable_keys(capsys):
    from twin_trainer.__main__ import main

    assert main(["config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == PRINTED_KEYS
    # What a plan (src/training/plan.ts) gets when a config file leaves a key out.
    assert {k: printed[k] for k in ("method", "epochs", "max_steps", "tokens_per_batch", "batching", "processes")} == {
        "method": "lora", "epochs": 2.0, "max_steps": 0, "tokens_per_batch": 2048, "batching": "packed", "processes": 0,
    }  # fmt: skip
    assert printed["learning_rate"] == 2e-4 and printed["lora_r"] == 16


def test_the_config_command_resolves_a_shipped_file_with_overrides_as_train_would():
    # A process of its own, as twin starts it: stdout is the JSON and nothing else.
    file = "configs/qwen2.5-7b-full-8x80gb.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "twin_trainer", "config", "--config", file, "--set", "epochs=1.5", "--set", "processes=4"],
        cwd=TRAINER, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == asdict(load_config(str(TRAINER / file), ["epochs=1.5", "processes=4"]))
    assert (printed["method"], printed["tokens_per_batch"], printed["epochs"], printed["processes"]) == ("full", 8192, 1.5, 4)


def test_the_config_command_refuses_a_bad_override_without_printing_json(capsys):
    from twin_trainer.__main__ import main

    assert main(["config", "--set", "batching=sorted"]) == 2
    output = capsys.readouterr()
    assert output.out == "" and "batching='sorted'" in output.err


def test_the_config_command_loads_neither_torch_nor_transformers():
    # twin runs it each time it plans a run: it must answer in a fraction of a second.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "twin_trainer", "config", "--config", "configs/smollm2-135m-lora-cpu.yaml"],
        cwd=TRAINER, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "yaml" in imported, "the import list was read"
    heavy = {"torch", "transformers", "peft", "numpy", "gguf", "psycopg", "matplotlib", "scipy", "sklearn"}
    assert imported & heavy == set()
