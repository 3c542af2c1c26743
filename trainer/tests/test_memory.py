"""The memory estimate against published figures for a 7B model (Qwen2.5-7B's shape)."""

import pytest

from twin_trainer.memory import GIB, ModelShape, describe, estimate_bytes, lora_parameters

pytestmark = pytest.mark.unit  # pure: no database, no model; `npm run test:unit` runs it

QWEN_7B = ModelShape(parameters=7_615_616_512, layers=28, hidden=3584, vocabulary=152_064)
# q, k, v, o, gate, up, down of one Qwen2.5-7B layer: (in, out)
PROJECTIONS = [(3584, 3584), (3584, 512), (3584, 512), (3584, 3584), (3584, 18944), (3584, 18944), (18944, 3584)]


def test_full_fine_tuning_costs_16_bytes_per_parameter_sharded_over_the_gpus():
    one = estimate_bytes(QWEN_7B, method="full", tokens_per_batch=4096, gradient_checkpointing=True)
    # Published: mixed-precision AdamW needs 16 bytes per parameter, ~122 GB for 7.6B, before activations.
    assert one["states"] == pytest.approx(16 * QWEN_7B.parameters)
    assert abs(one["states"] / 1e9 - 122) / 122 < 0.2
    eight = estimate_bytes(QWEN_7B, method="full", tokens_per_batch=4096, gradient_checkpointing=True, gpus=8)
    assert eight["states"] == pytest.approx(one["states"] / 8), "FSDP shards weights, gradients and optimizer"
    assert one["total"] > 80 * GIB > eight["total"], "full needs several 80 GB GPUs, fits on eight"


def test_lora_costs_2_bytes_per_parameter_plus_the_adapter():
    shape = ModelShape(**{**QWEN_7B.__dict__, "lora_parameters": lora_parameters(QWEN_7B, 16, PROJECTIONS)})
    assert shape.lora_parameters == 40_370_176, "r=16 on all linear projections: ~40M trainable"
    lora = estimate_bytes(shape, method="lora", tokens_per_batch=4096, gradient_checkpointing=True)
    assert lora["states"] == pytest.approx(2 * QWEN_7B.parameters + 16 * shape.lora_parameters)
    # Published: ~15.2 GB of bf16 weights for 7.6B parameters, plus the adapter with its optimizer.
    assert abs(lora["states"] / 1e9 - (15.2 + 0.65)) / 15.85 < 0.2
    assert lora["total"] < 24 * GIB, f"fits one 24 GB card with checkpointing: {describe(lora)}"
    qlora = estimate_bytes(shape, method="qlora", tokens_per_batch=4096, gradient_checkpointing=True)
    assert qlora["total"] < 16 * GIB, f"QLoRA fits 16 GB: {describe(qlora)}"


def test_checkpointing_trades_activations_for_compute():
    without = estimate_bytes(QWEN_7B, method="lora", tokens_per_batch=4096, gradient_checkpointing=False)
    with_it = estimate_bytes(QWEN_7B, method="lora", tokens_per_batch=4096, gradient_checkpointing=True)
    assert without["activations"] > 10 * with_it["activations"]
    with pytest.raises(ValueError, match="expected full, lora or qlora"):
        estimate_bytes(QWEN_7B, method="dora", tokens_per_batch=1, gradient_checkpointing=True)


def test_a_gguf_base_s_shape_comes_from_its_header():
    from conftest import smollm2_gguf
    from twin_trainer.memory import gguf_shape

    shape = gguf_shape(smollm2_gguf(), lora_rank=16)
    assert shape.parameters == 134_515_008, "the count transformers gives SmolLM2-135M (tied head counted once)"
    assert (shape.layers, shape.hidden, shape.vocabulary) == (30, 576, 49152)
    # q, k, v, o, gate, up, down of one layer: (in, out)
    projections = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]
    assert shape.lora_parameters == lora_parameters(shape, 16, projections) == 4_884_480
