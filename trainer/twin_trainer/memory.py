"""How much accelerator memory a run needs, before it starts (so a config that cannot fit is refused).

Per parameter, with mixed-precision AdamW: full fine-tuning keeps bf16 weights (2 bytes) and
gradients (2), fp32 master weights (4) and Adam's two moments (8) — 16 bytes, sharded across GPUs
by FSDP. LoRA keeps only the frozen bf16 base (2 bytes; QLoRA's 4-bit base ~0.56) plus the adapter's
own 16 bytes per trainable parameter. Activations come on top: with gradient checkpointing each
layer keeps its input (2 bytes × hidden per token) and one layer is recomputed at a time (about
34 bytes × hidden per token, Korthikanti et al. 2022); without it every layer keeps its 34.
Logits are computed only where a token is learnt, in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


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
) -> dict[str, float]:
    """Bytes per GPU by part: weights and optimizer states, activations, logits, and the total."""
    if method == "full":
        states = 16 * shape.parameters / max(1, gpus)
    elif method in ("lora", "qlora"):
        base = 0.5625 if method == "qlora" else 2  # NF4 with its block scales
        states = base * shape.parameters + 16 * shape.lora_parameters
    else:
        raise ValueError(f"method={method!r}: expected full, lora or qlora")
    per_token_layer = 2 * shape.hidden if gradient_checkpointing else 34 * shape.hidden
    activations = tokens_per_batch * (per_token_layer * shape.layers + (34 * shape.hidden if gradient_checkpointing else 0))
    logits = tokens_per_batch * supervised_share * shape.vocabulary * 4 * 2  # fp32 logits and their gradient
    total = states + activations + logits
    return {"states": states, "activations": activations, "logits": logits, "total": total}


def describe(estimate: dict[str, float]) -> str:
    return (
        f"~{estimate['total'] / GIB:.1f} GiB per GPU (weights and optimizer {estimate['states'] / GIB:.1f}, "
        f"activations {estimate['activations'] / GIB:.1f}, logits {estimate['logits'] / GIB:.1f})"
    )
