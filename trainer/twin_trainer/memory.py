"""How much accelerator memory a run needs, before it starts (so a config that cannot fit is refused).

Per parameter, with mixed-precision AdamW: full fine-tuning keeps bf16 weights (2 bytes) and
gradients (2), fp32 master weights (4) and Adam's two moments (8) — 16 bytes, sharded across GPUs
by FSDP. LoRA keeps only the frozen bf16 base (2 bytes; QLoRA's 4-bit base ~0.56) plus the adapter's
own 16 bytes per trainable parameter. Activations come on top: with gradient checkpointing each
layer keeps its input (2 bytes × hidden per token) and one layer is recomputed at a time (about
34 bytes × hidden per token, Korthikanti et al. 2022); without it a layer keeps about 104 (measured).
Checkpointing can cover only some layers: as many as the card needs (`layers_to_checkpoint`), the
rest run once. Logits are computed only where a token is learnt, in fp32, all at once or a slice at
a time. Checked against peak memory on an H200 by bench/fsdp/gpu_check.py and gpu_throughput.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

GIB = 2**30
UNCHECKPOINTED_BYTES = 104  # per token and hidden unit, of a layer that is not checkpointed


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    layers: int
    hidden: int
    vocabulary: int
    # Trainable LoRA parameters: r × (in + out) for every adapted projection.
    lora_parameters: int = 0


def lora_parameters(shape: ModelShape, rank: int, projections_in_out: list[tuple[int, int]]) -> int:
    """r × (in + out) per adapted projection of one layer, times the layers."""
    return shape.layers * sum(rank * (i + o) for i, o in projections_in_out)


def estimate_bytes(
    shape: ModelShape,
    *,
    method: str,
    tokens_per_batch: int,
    gradient_checkpointing: bool,
    gpus: int = 1,
    supervised_share: float = 0.5,
    checkpointed_layers: int | None = None,
    logits: str = "logits",
) -> dict[str, float]:
    """Bytes per GPU by part: weights and optimizer states, activations, logits, and the total.

    `checkpointed_layers` (default: every layer with gradient checkpointing, none without) counts
    the layers that keep only their input; the rest keep all their activations. `logits="chunked"`
    (or "liger") holds one slice of fp32 logits at a time instead of all learnt positions'.
    """
    if method == "full":
        states = 16 * shape.parameters / max(1, gpus)
    elif method in ("lora", "qlora"):
        base = 0.5625 if method == "qlora" else 2  # NF4 with its block scales
        states = base * shape.parameters + 16 * shape.lora_parameters
    else:
        raise ValueError(f"method={method!r}: expected full, lora or qlora")
    if checkpointed_layers is None:
        checkpointed_layers = shape.layers if gradient_checkpointing else 0
    kept = min(max(checkpointed_layers, 0), shape.layers)
    # A checkpointed layer keeps its input, and one of them at a time is recomputed. A layer run
    # once keeps everything its backward pass reads: transformers' unfused layers with LoRA's
    # dropout copies keep about 104 bytes × hidden per token, three times the fused layers of
    # Korthikanti et al. (on an H200, Qwen2.5 LoRA r16: 102 at 7B, 108 at 1.5B; bench/fsdp/results).
    per_token = 2 * shape.hidden * kept + UNCHECKPOINTED_BYTES * shape.hidden * (shape.layers - kept) + (34 * shape.hidden if kept else 0)
    activations = tokens_per_batch * per_token
    if logits == "logits":
        # fp32 logits, the log-softmax cross-entropy keeps, and its gradient: three fp32 copies (on an H200
        # the peak matched this within 4% for LoRA on 0.5B-7B Qwen2.5 shapes; two copies fell 28% short at 0.5B).
        logit_bytes = tokens_per_batch * supervised_share * shape.vocabulary * 4 * 3
    else:
        # One slice of fp32 logits (forward.chunk_rows: 256 MiB) with its temporaries (about four
        # slices' worth on an H200: 0.9 GiB at 1.5B, 2.0 at 7B), plus the saved gradient of the
        # hidden states (bf16) of the learnt positions.
        logit_bytes = 4 * 2**28 + tokens_per_batch * supervised_share * shape.hidden * 2
    total = states + activations + logit_bytes
    return {"states": states, "activations": activations, "logits": logit_bytes, "total": total}


def layers_to_checkpoint(shape: ModelShape, *, budget_bytes: float, **estimate: Any) -> int:
    """The fewest layers to checkpoint for the run to fit `budget_bytes`: every layer left out of
    checkpointing saves its recomputation (about a third of its forward and backward time).
    When even all of them do not fit, all: check_fits then says by how much."""
    for layers in range(shape.layers + 1):
        if estimate_bytes(shape, gradient_checkpointing=True, checkpointed_layers=layers, **estimate)["total"] <= budget_bytes:
            return layers
    return shape.layers


def describe(estimate: dict[str, float]) -> str:
    return (
        f"~{estimate['total'] / GIB:.1f} GiB per GPU (weights and optimizer {estimate['states'] / GIB:.1f}, "
        f"activations {estimate['activations'] / GIB:.1f}, logits {estimate['logits'] / GIB:.1f})"
    )


class MemoryBudgetError(RuntimeError):
    """The run cannot fit the GPUs it is given; the message carries the estimate."""


ADAPTED = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def gguf_shape(gguf_path: Any, lora_rank: int = 0) -> ModelShape:
    """A GGUF base's shape from its header alone (no tensor data is read)."""
    from .gguf_export import _reader, base_facts, metadata_value

    reader = _reader(gguf_path)
    facts = base_facts(reader)
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    embedding = shapes["token_embd.weight"]  # GGUF lists dims innermost first: [hidden, vocabulary]
    lora = sum(
        lora_rank * (dims[0] + dims[1])
        for name, dims in shapes.items()
        if len(dims) == 2 and name.startswith("blk.") and name.split(".")[2] in ADAPTED
    )
    parameters = sum(math.prod(dims) for dims in shapes.values())  # a tied head has no tensor of its own
    hidden = metadata_value(reader, f"{facts['architecture']}.embedding_length")
    return ModelShape(parameters, int(facts["layers"]), int(hidden or embedding[0]), embedding[1], lora)


PROJECTION_NAMES = ("q", "k", "v", "o", "gate", "up", "down")


def hf_shape(folder: Any, lora_rank: int = 0) -> ModelShape:
    """An HF model's shape, by building it on the meta device (no memory, no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    lora = sum(
        lora_rank * (module.in_features + module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1].removesuffix("_proj") in PROJECTION_NAMES
    )
    parameters = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    return ModelShape(parameters, config.num_hidden_layers, config.hidden_size, config.vocab_size, lora)



def model_shape(base: Any, lora_rank: int = 0) -> ModelShape:
    from pathlib import Path

    path = Path(base)
    return gguf_shape(path, lora_rank) if path.suffix == ".gguf" else hf_shape(path, lora_rank)


def check_fits(
    shape: ModelShape,
    *,
    method: str,
    tokens_per_batch: int,
    gradient_checkpointing: bool,
    gpus: int,
    gpu_memory_gb: float,
    checkpointed_layers: int | None = None,
    logits: str = "logits",
) -> dict[str, float]:
    """The estimate, or a MemoryBudgetError when it exceeds the memory of one GPU."""
    estimate = estimate_bytes(
        shape,
        method=method,
        tokens_per_batch=tokens_per_batch,
        gradient_checkpointing=gradient_checkpointing,
        gpus=gpus,
        checkpointed_layers=checkpointed_layers,
        logits=logits,
    )
    if gpu_memory_gb and estimate["total"] > gpu_memory_gb * 1e9:
        hint = "use method=lora (or qlora)" if method == "full" else "lower tokens_per_batch or turn gradient_checkpointing on"
        raise MemoryBudgetError(
            f"method={method} of a {shape.parameters / 1e9:.1f}B-parameter model on {gpus} GPU(s) of {gpu_memory_gb:g} GB "
            f"needs {describe(estimate)}: it does not fit; {hint}, or train on more GPUs (configs/*-8x80gb.yaml)"
        )
    return estimate
