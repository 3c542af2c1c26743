"""The catalogue's training memory (src/models/catalogue.yaml) is the trainer's own estimate."""

from pathlib import Path

import pytest
import yaml

from twin_trainer.memory import ModelShape, estimate_bytes, lora_parameters

pytestmark = pytest.mark.unit

CATALOGUE = Path(__file__).resolve().parents[2] / "src" / "models" / "catalogue.yaml"


def entries():
    return yaml.safe_load(CATALOGUE.read_text())["models"]


@pytest.mark.parametrize("model", entries(), ids=lambda m: m["name"])
def test_train_memory_is_the_trainers_estimate(model):
    s = model["shape"]
    head = s["hidden"] // s["heads"]
    kv = s["kv_heads"] * head
    h, i = s["hidden"], s["intermediate"]
    # q, k, v, o, gate, up, down: LoRA rank 16 on every projection, as the configs train.
    projections = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
    base = ModelShape(s["parameters"], s["layers"], h, s["vocabulary"])
    shape = ModelShape(base.parameters, base.layers, h, base.vocabulary, lora_parameters(base, 16, projections))
    for method in ("lora", "qlora"):
        total = estimate_bytes(shape, method=method, tokens_per_batch=4096, gradient_checkpointing=True)["total"] / 1e9
        assert model["train_gb"][method] == pytest.approx(total, abs=0.1), f"{model['name']} {method}: {total:.2f} GB"
