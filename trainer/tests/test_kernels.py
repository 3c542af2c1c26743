"""The faster paths of the training step against the reference: one attention call per packed row
(varlen, flex) against one per example, the chunked (and Liger's fused) loss against full logits,
and checkpointing only as many layers as the memory budget needs. CUDA-only kernels are checked
where a GPU is (bench/fsdp/gpu_throughput.py runs this file there first)."""

import pytest
import torch
import torch.nn.functional as F

from twin_trainer.config import ConfigError, TrainConfig
from twin_trainer.data import IGNORE_INDEX, LabelledExample
from twin_trainer.forward import (
    ATTENTION,
    FLEX,
    PACKED_ATTENTIONS,
    VARLEN,
    chunked_cross_entropy,
    register_packed_attention,
    supervised_loss,
)
from twin_trainer.memory import ModelShape, estimate_bytes, layers_to_checkpoint
from twin_trainer.packing import pack
from twin_trainer.train import _checkpointed, checkpointed_layers, decoder_layers

CUDA = torch.cuda.is_available()
VOCABULARY = 1000


def tiny_model(attention: str, device: str = "cpu", dtype: torch.dtype = torch.float32, lora: bool = False):
    from transformers import AutoModelForCausalLM, Qwen2Config

    if attention in PACKED_ATTENTIONS:
        register_packed_attention(attention)
    config = Qwen2Config(
        hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCABULARY, use_cache=False, attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))  # fmt: skip
        for name, parameter in model.named_parameters():  # non-zero B, so every LoRA gradient is non-zero
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.02)
    return model


def packed_row(device: str = "cpu", lengths=(37, 2, 120, 64, 1, 29, 211)):
    """Documents of very different lengths (one of a single token) in one row, the later part of each learnt."""
    generator = torch.Generator().manual_seed(7)
    examples = []
    for index, length in enumerate(lengths):
        ids = torch.randint(0, VOCABULARY, (length,), generator=generator).tolist()
        cut = length // 3
        examples.append(LabelledExample(f"d{index}", ids, [IGNORE_INDEX] * cut + ids[cut:], [None] * length, [True] * length))
    return pack(examples).to(torch.device(device))


def loss_and_gradients(model, batch, loss: str = "logits"):
    model.zero_grad(set_to_none=True)
    value = supervised_loss(model, batch, loss)
    value.backward()
    return value.detach(), {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_gradients_close(got: dict, expected: dict, tolerance: float) -> None:
    assert got.keys() == expected.keys() and expected
    for name in expected:
        difference = (got[name] - expected[name]).norm() / expected[name].norm().clamp_min(1e-12)
        assert difference < tolerance, f"{name}: relative difference {difference:.3g}"


@pytest.mark.unit
def test_flex_attention_gives_each_packed_example_its_own_attention():
    """FlexAttention's document mask against per-example attention (forward: its backward needs a GPU)."""
    batch = packed_row()
    with torch.no_grad():
        reference = supervised_loss(tiny_model(ATTENTION), batch)
        flex = supervised_loss(tiny_model(FLEX), batch)
        leaky = supervised_loss(tiny_model("sdpa"), batch.__class__(batch.input_ids, batch.labels, None, None, batch.tokens, 0.0))
    torch.testing.assert_close(flex, reference, rtol=1e-5, atol=1e-5)
    assert abs(leaky - reference) > 1e-3, "the same check sees attention across examples"


@pytest.mark.unit
def test_chunked_loss_and_gradients_equal_full_logits():
    batch = packed_row()
    model = tiny_model(ATTENTION)
    reference, expected = loss_and_gradients(model, batch, "logits")
    chunked, got = loss_and_gradients(model, batch, "chunked")
    torch.testing.assert_close(chunked, reference, rtol=1e-6, atol=1e-6)
    assert_gradients_close(got, expected, 1e-5)
    assert "lm_head.weight" in got or "model.embed_tokens.weight" in got, "the output head's gradient flows too"


@pytest.mark.unit
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_chunked_cross_entropy_in_any_slicing_equals_cross_entropy(rows):
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(23, 16, generator=generator, requires_grad=True)
    weight = torch.randn(50, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 50, (23,), generator=generator)
    expected = F.cross_entropy(hidden @ weight.t(), targets)
    (expected * 3).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    got = chunked_cross_entropy(hidden, weight, targets, rows)
    (got * 3).backward()  # an upstream factor reaches both gradients
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(hidden.grad, grads[0])
    torch.testing.assert_close(weight.grad, grads[1])


@pytest.mark.unit
def test_checkpointing_some_layers_recomputes_only_those_and_changes_nothing():
    batch = packed_row()
    config = TrainConfig(gradient_checkpointing="on")
    plain = tiny_model(ATTENTION)
    plain.train()
    reference, expected = loss_and_gradients(plain, batch)
    partial = tiny_model(ATTENTION)
    _checkpointed(partial, config, torch.device("cpu"), planned=2)
    partial.train()
    assert [layer.gradient_checkpointing for layer in decoder_layers(partial)] == [True, True, False]
    value, got = loss_and_gradients(partial, batch)
    torch.testing.assert_close(value, reference)
    assert_gradients_close(got, expected, 1e-6)


QWEN_7B = ModelShape(7_615_616_512 - 40_370_176, 28, 3584, 152064, 40_370_176)


@pytest.mark.unit
@pytest.mark.parametrize("gigabytes", [18, 21, 24, 30, 140])
def test_the_fewest_layers_that_fit_the_budget_are_checkpointed(gigabytes):
    sizes = dict(method="lora", tokens_per_batch=4096)
    budget = gigabytes * 1e9
    layers = layers_to_checkpoint(QWEN_7B, budget_bytes=budget, **sizes)
    total = lambda k: estimate_bytes(QWEN_7B, gradient_checkpointing=True, checkpointed_layers=k, **sizes)["total"]  # noqa: E731
    if total(QWEN_7B.layers) > budget:
        assert layers == QWEN_7B.layers, "nothing fits: all, and check_fits says by how much"
        return
    assert total(layers) <= budget
    assert layers == 0 or total(layers - 1) > budget, "one layer fewer would not fit"
    assert all(total(k) > total(k + 1) for k in range(1, QWEN_7B.layers)), "each further checkpointed layer saves memory"


@pytest.mark.unit
def test_the_chunked_loss_is_estimated_without_all_the_logits():
    logits = lambda tokens, kind: estimate_bytes(QWEN_7B, method="lora", tokens_per_batch=tokens, gradient_checkpointing=True, logits=kind)["logits"]  # noqa: E731
    assert logits(4096, "chunked") < logits(4096, "logits") / 3
    assert logits(32768, "chunked") < logits(32768, "logits") / 20, "a slice at a time: it hardly grows with the row"


@pytest.mark.unit
def test_the_checkpointing_setting_decides_the_layers():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    count = lambda setting, device, fitting=None: checkpointed_layers(TrainConfig(gradient_checkpointing=setting), device, 28, fitting)  # noqa: E731
    assert count("on", cpu) == 28 and count("off", gpu) == 0
    assert count("auto", cpu, 5) == 0, "no budget to plan against on a CPU"
    assert count("auto", gpu, 5) == 5 and count("auto", gpu) == 28
    assert count("0.5", gpu) == 14 and count("0", gpu) == 0


@pytest.mark.unit
def test_the_new_settings_are_checked():
    TrainConfig(gradient_checkpointing="0.25", loss_implementation="chunked").check()
    with pytest.raises(ConfigError, match="gradient_checkpointing='1.5'"):
        TrainConfig(gradient_checkpointing="1.5").check()
    with pytest.raises(ConfigError, match="loss_implementation='fast'"):
        TrainConfig(loss_implementation="fast").check()
    with pytest.raises(ConfigError, match="full fine-tuning shards the output head"):
        TrainConfig(method="full", loss_implementation="chunked").check()


# ── on a GPU: the kernels that only run there, in bf16 ───────────────────────

needs_cuda = pytest.mark.skipif(not CUDA, reason="the kernel runs on a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("attention", [VARLEN, FLEX])
def test_one_call_per_row_matches_per_example_attention_in_bf16(attention):
    batch = packed_row("cuda")
    reference, expected = loss_and_gradients(tiny_model(ATTENTION, "cuda", torch.bfloat16, lora=True), batch)
    value, got = loss_and_gradients(tiny_model(attention, "cuda", torch.bfloat16, lora=True), batch)
    torch.testing.assert_close(value.float(), reference.float(), rtol=1e-2, atol=1e-2)
    assert_gradients_close(got, expected, 3e-2)


@needs_cuda
@pytest.mark.parametrize("loss", ["chunked", "liger"])
def test_the_loss_without_full_logits_matches_in_bf16(loss):
    if loss == "liger":
        pytest.importorskip("liger_kernel")
    batch = packed_row("cuda")
    model = tiny_model(ATTENTION, "cuda", torch.bfloat16, lora=True)
    reference, expected = loss_and_gradients(model, batch, "logits")
    value, got = loss_and_gradients(model, batch, loss)
    torch.testing.assert_close(value.float(), reference.float(), rtol=1e-2, atol=1e-2)
    assert_gradients_close(got, expected, 3e-2)


@pytest.mark.unit
def test_a_row_filled_to_a_multiple_for_compiled_layers_learns_exactly_the_same():
    """Compiled layers see rows filled up to a multiple of 64 tokens; the filler is its own example,
    learnt nowhere, so the loss and every gradient stay those of the row as it was."""
    row = packed_row()
    examples = [
        LabelledExample(f"d{i}", row.input_ids[0, s:e].tolist(), row.labels[0, s:e].tolist(), [None] * (e - s), [True] * (e - s))
        for i, (s, e) in enumerate(row.example_bounds)
    ]
    filled = pack(examples, multiple=64, pad_id=5)
    assert filled.input_ids.shape[1] % 64 == 0 and filled.input_ids.shape[1] - row.tokens < 64
    assert filled.tokens == row.tokens and filled.padding_fraction > 0
    assert filled.labels[0, row.tokens :].eq(IGNORE_INDEX).all()
    model = tiny_model(ATTENTION)
    reference, expected = loss_and_gradients(model, row)
    value, got = loss_and_gradients(model, filled)
    torch.testing.assert_close(value, reference)
    assert_gradients_close(got, expected, 1e-6)


@pytest.mark.unit
def test_auto_attention_is_varlen_on_a_gpu_and_per_example_elsewhere():
    from twin_trainer.forward import resolve_attention

    assert resolve_attention("auto", cuda=False) == ATTENTION
    assert resolve_attention("auto", cuda=True) == VARLEN
    assert resolve_attention(FLEX, cuda=True) == FLEX


@pytest.mark.unit
def test_layers_are_compiled_by_default_for_lora_on_a_gpu_only():
    from twin_trainer.train import compiles

    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert compiles(TrainConfig(method="lora"), gpu)
    assert not compiles(TrainConfig(method="lora"), cpu)
    assert not compiles(TrainConfig(method="full"), gpu) and not compiles(TrainConfig(method="qlora"), gpu)
    assert compiles(TrainConfig(compile_layers="on"), cpu) and not compiles(TrainConfig(compile_layers="off"), gpu)
