"""Held-out loss, per speaker and overall, on all trained tokens and on content tokens only.

Loss on `>>> `, names and `<|im_end|>` drops to near zero within a few steps of any run; the
content tokens (the messages' own text) are where a tuned model has to beat its base.
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from .data import LabelledExample
from .forward import supervised_logits
from .packing import pack, pack_greedily


def _summary(entry: list[float]) -> dict[str, float | int]:
    loss = entry[0] / entry[1] if entry[1] else float("nan")
    content = entry[2] / entry[3] if entry[3] else float("nan")
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if entry[1] else float("nan"),
        "tokens": int(entry[1]),
        "content_loss": content,
        "content_perplexity": math.exp(content) if entry[3] else float("nan"),
        "content_tokens": int(entry[3]),
    }


@torch.no_grad()
def evaluate(
    model: Any,
    examples: list[LabelledExample],
    *,
    base: bool = False,
    tokens_per_batch: int = 2048,
    device: torch.device | str = "cpu",
    row_multiple: int = 1,
) -> dict[str, Any]:
    """Loss and perplexity (nats per token), bits per character, per speaker; base=True disables the adapter.

    `row_multiple`: rows filled up to a multiple of it, as a run with compiled layers trains them
    (packing.pack), so evaluating meets the shapes training compiled for."""
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # loss, tokens, content loss, content tokens
    longest = max((len(e.input_ids) for e in examples), default=0)
    context = model.disable_adapter() if base and hasattr(model, "disable_adapter") else nullcontext()
    with context:
        for row in pack_greedily(examples, max(tokens_per_batch, longest)):
            logits, targets, where = supervised_logits(model, pack(row, row_multiple).to(device))
            losses = F.cross_entropy(logits, targets, reduction="none").tolist()
            speakers = [speaker for e in row for speaker in e.speakers]
            content = [flag for e in row for flag in e.content]
            for loss, index in zip(losses, where.tolist()):
                for key in ("overall", f"speaker:{speakers[index]}"):
                    entry = sums[key]
                    entry[0] += loss
                    entry[1] += 1
                    if content[index]:
                        entry[2] += loss
                        entry[3] += 1
    if was_training:
        model.train()
    characters = sum(e.trained_characters for e in examples)
    overall = _summary(sums["overall"])
    overall["bits_per_character"] = sums["overall"][0] / max(characters, 1) / math.log(2)
    speakers = {key.split(":", 1)[1]: _summary(value) for key, value in sums.items() if key.startswith("speaker:")}
    return {"overall": overall, "speakers": speakers}
