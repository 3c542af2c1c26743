import pytest
import torch

from twin_trainer.config import ConfigError, TrainConfig, load_config
from twin_trainer.model import HardwareError, quantization_for


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
