"""Batches: packed (the default) or padded (for comparison).

Packed: examples are laid end to end in one row with position ids restarting at 0 for each, so
attention never crosses an example boundary (transformers derives a block-diagonal mask from the
position ids). That only happens with `use_cache=False`: with a cache, the packed mask is
silently skipped, and every example would attend to the ones before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import IGNORE_INDEX, LabelledExample


@dataclass
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None
    # Real (non-padding) tokens, and the share of the batch that is padding.
    tokens: int
    padding_fraction: float

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "labels": self.labels}
        if self.position_ids is not None:
            inputs["position_ids"] = self.position_ids
        if self.attention_mask is not None:
            inputs["attention_mask"] = self.attention_mask
        return inputs


def pack(examples: list[LabelledExample]) -> Batch:
    """One row: examples concatenated; each example's first label is masked (nothing predicts it)."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example in examples:
        ids.extend(example.input_ids)
        labels.extend([IGNORE_INDEX, *example.labels[1:]])
        positions.extend(range(len(example.input_ids)))
    return Batch(
        input_ids=torch.tensor([ids]),
        labels=torch.tensor([labels]),
        position_ids=torch.tensor([positions]),
        attention_mask=None,
        tokens=len(ids),
        padding_fraction=0.0,
    )


def pad(examples: list[LabelledExample], pad_id: int) -> Batch:
    """Rows padded to the longest example, with an attention mask (the classic approach)."""
    longest = max(len(e.input_ids) for e in examples)
    ids = [e.input_ids + [pad_id] * (longest - len(e.input_ids)) for e in examples]
    labels = [e.labels + [IGNORE_INDEX] * (longest - len(e.labels)) for e in examples]
    mask = [[1] * len(e.input_ids) + [0] * (longest - len(e.input_ids)) for e in examples]
    real = sum(len(e.input_ids) for e in examples)
    return Batch(
        input_ids=torch.tensor(ids),
        labels=torch.tensor(labels),
        position_ids=None,
        attention_mask=torch.tensor(mask),
        tokens=real,
        padding_fraction=1 - real / (longest * len(examples)),
    )


def pack_greedily(examples: list[LabelledExample], max_tokens: int) -> list[list[LabelledExample]]:
    """Groups examples into rows of at most `max_tokens` (first fit, longest first)."""
    rows: list[tuple[int, list[LabelledExample]]] = []
    for example in sorted(examples, key=lambda e: len(e.input_ids), reverse=True):
        size = len(example.input_ids)
        for index, (used, row) in enumerate(rows):
            if used + size <= max_tokens:
                row.append(example)
                rows[index] = (used + size, row)
                break
        else:
            rows.append((size, [example]))
    return [row for _, row in rows]
