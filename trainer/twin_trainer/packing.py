"""Batches: packed (the default) or padded, length-grouped or not (for comparison).

Packed: examples are laid end to end in one row with position ids restarting at 0 for each, and
the row carries each example's bounds, so attention never crosses an example boundary: the
trainer's attention (forward.py) attends within each example; plain transformers derives a
block-diagonal mask from the position ids — but only with `use_cache=False`; with a cache that
mask is silently skipped, and every example would attend to the ones before it.
"""

from __future__ import annotations

import random
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
    # Packed rows: (start, end) of each example in the row.
    example_bounds: list[tuple[int, int]] | None = None

    def to(self, device: torch.device) -> Batch:
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return Batch(
            move(self.input_ids),
            move(self.labels),
            move(self.position_ids),
            move(self.attention_mask),
            self.tokens,
            self.padding_fraction,
            self.example_bounds,
        )


def pack(examples: list[LabelledExample], multiple: int = 1, pad_id: int = 0) -> Batch:
    """One row: examples concatenated; each example's first label is masked (nothing predicts it).

    With `multiple` > 1 the row is filled up to a multiple of it by one filler example of `pad_id`
    tokens, learnt nowhere and attended only by itself: a compiled model then meets few row
    shapes (it recompiles for each new one, and falls back to slow eager code after 8).
    """
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    bounds: list[tuple[int, int]] = []
    for example in examples:
        bounds.append((len(ids), len(ids) + len(example.input_ids)))
        ids.extend(example.input_ids)
        labels.extend([IGNORE_INDEX, *example.labels[1:]])
        positions.extend(range(len(example.input_ids)))
    real = len(ids)
    filler = -real % multiple
    if filler:
        bounds.append((real, real + filler))
        ids.extend([pad_id] * filler)
        labels.extend([IGNORE_INDEX] * filler)
        positions.extend(range(filler))
    return Batch(
        input_ids=torch.tensor([ids]),
        labels=torch.tensor([labels]),
        position_ids=torch.tensor([positions]),
        attention_mask=None,
        tokens=real,
        padding_fraction=filler / len(ids) if ids else 0.0,
        example_bounds=bounds,
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


def examples_per_batch(examples: list[LabelledExample], max_tokens: int) -> int:
    """A padded batch's fixed size: as many examples as fit `max_tokens` at the mean length."""
    mean = sum(len(e.input_ids) for e in examples) / max(len(examples), 1)
    return max(1, round(max_tokens / max(mean, 1)))


def ungrouped(examples: list[LabelledExample], max_tokens: int, seed: int = 0) -> list[list[LabelledExample]]:
    """Padded batches in plain random order, lengths mixed: the naive baseline."""
    batch_size = examples_per_batch(examples, max_tokens)
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]


def group_by_length(examples: list[LabelledExample], max_tokens: int, seed: int = 0) -> list[list[LabelledExample]]:
    """Padded batches the way transformers' `group_by_length` makes them (the reference's setup).

    A fixed number of examples per batch (as many as fit `max_tokens` at the mean length), drawn
    from shuffled "megabatches" of 50 batches that are sorted by length, so neighbours in length
    share a batch while the order stays random.
    """
    batch_size = examples_per_batch(examples, max_tokens)
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    megabatch = batch_size * 50
    rows: list[list[LabelledExample]] = []
    for start in range(0, len(shuffled), megabatch):
        ordered = sorted(shuffled[start : start + megabatch], key=lambda e: len(e.input_ids), reverse=True)
        rows.extend(ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
    return rows
