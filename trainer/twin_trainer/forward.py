"""The forward pass the trainer uses, for packed rows and padded batches alike.

Two savings over a plain `model(**batch).loss`, both exact:
- Packed rows attend within each example only, one causal attention per example, instead of one
  row-long attention under a block-diagonal mask (which still pays for the whole square).
- Logits are computed only where a label is learnt. The vocabulary projection is the largest
  matrix of a small model, and in a chat most tokens are context, not what the model learns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX
from .packing import Batch

ATTENTION = "twin_packed"


def _packed_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    example_bounds: list[tuple[int, int]] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention per example of a packed row; anything else goes to transformers' sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if example_bounds is None or query.shape[0] != 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    # Grouped-query attention (fewer key/value heads than query heads) without copying them.
    grouped = query.shape[1] != key.shape[1]
    dropout = dropout if module.training else 0.0
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
            enable_gqa=grouped,
        )
        for start, end in example_bounds
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register_packed_attention() -> str:
    """Makes `attn_implementation="twin_packed"` available; padded batches get sdpa's mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, _packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return ATTENTION


def supervised_logits(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, where): next-token logits at each position whose next token is learnt.

    `where` holds the flat indices (row * length + position) of the target tokens, so callers can
    look up per-token facts such as the speaker. The model is called as a whole (a boolean
    `logits_to_keep` picks the positions), so FSDP's hooks on the root module run as they must.
    """
    extra = {"example_bounds": batch.example_bounds} if batch.example_bounds is not None else {}
    targets = batch.labels[:, 1:]
    learnt = targets != IGNORE_INDEX
    keep = F.pad(learnt, (0, 1), value=False)  # position p predicts token p + 1; the last predicts nothing
    logits = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=batch.attention_mask,
        use_cache=False,
        logits_to_keep=keep,
        **extra,
    ).logits.float()
    rows, positions = learnt.nonzero(as_tuple=True)
    where = rows * batch.labels.shape[1] + positions + 1
    return logits, targets[learnt], where


def supervised_loss(model: Any, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the learnt tokens of the batch."""
    logits, targets, _ = supervised_logits(model, batch)
    return F.cross_entropy(logits, targets)
