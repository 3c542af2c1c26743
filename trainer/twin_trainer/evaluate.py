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

from .data import IGNORE_INDEX, LabelledExample


def _token_losses(model: Any, example: LabelledExample) -> torch.Tensor:
    ids = torch.tensor([example.input_ids])
    logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
    targets = torch.tensor(example.labels[1:])
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")


@torch.no_grad()
def evaluate(model: Any, examples: list[LabelledExample], *, base: bool = False) -> dict[str, Any]:
    """Loss and perplexity (nats per token), bits per character, per speaker; base=True disables the adapter."""
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # loss, tokens, content loss, content tokens
    characters = 0
    context = model.disable_adapter() if base and hasattr(model, "disable_adapter") else nullcontext()
    with context:
        for example in examples:
            losses = _token_losses(model, example)
            for position, loss in enumerate(losses.tolist()):
                token = position + 1
                if example.labels[token] == IGNORE_INDEX:
                    continue
                for key in ("overall", f"speaker:{example.speakers[token]}"):
                    entry = sums[key]
                    entry[0] += loss
                    entry[1] += 1
                    if example.content[token]:
                        entry[2] += loss
                        entry[3] += 1
            characters += example.trained_characters
    if was_training:
        model.train()

    def summary(entry: list[float]) -> dict[str, float | int]:
        loss = entry[0] / entry[1] if entry[1] else float("nan")
        content = entry[2] / entry[3] if entry[3] else float("nan")
        return {
            "loss": loss,
            "perplexity": math.exp(loss) if entry[1] else float("nan"),
            "tokens": int(entry[1]),
            "content_loss": content,
            "content_tokens": int(entry[3]),
        }

    overall = summary(sums["overall"])
    overall["bits_per_character"] = sums["overall"][0] / max(characters, 1) / math.log(2)
    speakers = {key.split(":", 1)[1]: summary(value) for key, value in sums.items() if key.startswith("speaker:")}
    return {"overall": overall, "speakers": speakers}
