"""The forward pass the trainer uses, for packed rows and padded batches alike.

Savings over a plain `model(**batch).loss`, all exact:
- Packed rows attend within each example only, never across, and never pay for the whole square
  of a row-long mask. Three ways (`attn_implementation`):
  - `twin_packed`: one causal attention per example (the reference: many small kernel calls);
  - `twin_varlen`: one call per layer over the whole row, PyTorch's variable-length flash
    attention with the examples' cumulative bounds (CUDA only);
  - `twin_flex`: one call per layer, FlexAttention with a document mask (compiled on CUDA; runs
    eagerly anywhere, which is how the CPU tests check it).
- Logits are computed only where a label is learnt. The vocabulary projection is the largest
  matrix of a small model, and in a chat most tokens are context, not what the model learns.
  `loss_implementation` goes further: `chunked` never holds all those fp32 logits at once (a
  linear + cross-entropy computed in slices, its gradient taken in the same pass), `liger` is
  Liger's fused Triton kernel for the same (GPU, optional package).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .config import LOSSES
from .data import IGNORE_INDEX
from .packing import Batch

ATTENTION = "twin_packed"
VARLEN = "twin_varlen"
FLEX = "twin_flex"
PACKED_ATTENTIONS = (ATTENTION, VARLEN, FLEX)


@dataclass
class Documents:
    """A packed row's examples, in the forms the attention kernels take, built once per forward."""

    bounds: list[tuple[int, int]]
    cumulative: torch.Tensor  # int32 (examples + 1,): 0, end of the first, …, the row's length
    longest: int
    ids: torch.Tensor  # (row length,): each position's example
    _block_mask: Any = None

    @classmethod
    def of(cls, bounds: list[tuple[int, int]], device: torch.device) -> Documents:
        ends = [end for _, end in bounds]
        cumulative = torch.tensor([0, *ends], dtype=torch.int32, device=device)
        lengths = torch.tensor([end - start for start, end in bounds], device=device)
        ids = torch.repeat_interleave(torch.arange(len(bounds), device=device), lengths)
        return cls(bounds, cumulative, max(end - start for start, end in bounds), ids)

    def block_mask(self) -> Any:
        """FlexAttention's block mask: causal, within one example."""
        if self._block_mask is None:
            from torch.nn.attention.flex_attention import create_block_mask

            ids = self.ids

            def same_example_causal(batch, head, query, key):
                return (ids[query] == ids[key]) & (query >= key)

            length = ids.shape[0]
            self._block_mask = create_block_mask(
                same_example_causal, None, None, length, length, device=ids.device, _compile=ids.is_cuda
            )
        return self._block_mask


def _for_packed_rows(kernel: Callable[..., torch.Tensor]) -> Callable[..., tuple[torch.Tensor, None]]:
    """An attention function as transformers calls it: `kernel` for one packed row (its examples
    in `documents`), transformers' sdpa for anything else (padded batches, generation)."""

    def attention(
        module: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        dropout: float = 0.0,
        scaling: float | None = None,
        documents: Documents | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        if documents is None or query.shape[0] != 1:
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            return sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
            )
        return kernel(module, query, key, value, dropout, scaling, documents), None

    return attention


def _per_example_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout: float, scaling: float | None, documents: Documents
) -> torch.Tensor:
    """Causal attention per example of a packed row."""
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
        for start, end in documents.bounds
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


@cache
def _varlen_kernel() -> tuple[Any, bool, bool]:
    """torch's varlen_attn and what this PyTorch's version of it takes (its arguments changed in 2.11)."""
    from torch.nn.attention.varlen import varlen_attn

    parameters = inspect.signature(varlen_attn).parameters
    return varlen_attn, "window_size" in parameters, "enable_gqa" in parameters


def _varlen_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout: float, scaling: float | None, documents: Documents
) -> torch.Tensor:
    """One flash-attention call over the whole packed row, the examples kept apart by their bounds."""
    varlen_attn, takes_window, takes_gqa = _varlen_kernel()
    # (1, heads, tokens, dim) → (tokens, heads, dim), the layout varlen_attn takes.
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    groups = q.shape[1] // k.shape[1]
    extra: dict[str, Any] = {"window_size": (-1, 0)} if takes_window else {"is_causal": True}
    if groups > 1 and takes_gqa:
        extra["enable_gqa"] = True
    elif groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    cumulative, longest = documents.cumulative, documents.longest
    out = varlen_attn(q, k, v, cumulative, cumulative, longest, longest, scale=scaling, **extra)
    return out.unsqueeze(0)  # (1, tokens, heads, dim), as transformers expects back


@cache
def _compiled_flex() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)  # rows differ in length: dynamic after the first recompile


def _flex_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout: float, scaling: float | None, documents: Documents
) -> torch.Tensor:
    """One FlexAttention call over the whole packed row under a same-example causal mask."""
    if query.is_cuda:
        kernel = _compiled_flex()
    else:
        from torch.nn.attention.flex_attention import flex_attention as kernel
    grouped = query.shape[1] != key.shape[1]
    out = kernel(query, key, value, block_mask=documents.block_mask(), scale=scaling, enable_gqa=grouped)
    return out.transpose(1, 2).contiguous()


KERNELS = {name: _for_packed_rows(kernel) for name, kernel in
           ((ATTENTION, _per_example_attention), (VARLEN, _varlen_attention), (FLEX, _flex_attention))}  # fmt: skip


def resolve_attention(setting: str, cuda: bool) -> str:
    """`auto`: one varlen flash-attention call per row on a GPU (3.5× the per-example loop for 1.5B
    on an H200), the per-example loop elsewhere (varlen has no CPU kernel)."""
    if setting != "auto":
        return setting
    if cuda:
        try:
            _varlen_kernel()
            return VARLEN
        except ImportError:
            pass
    return ATTENTION


def register_packed_attention(name: str = ATTENTION) -> str:
    """Makes `attn_implementation=name` available; padded batches get sdpa's mask and kernel."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(name, KERNELS[name])
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)
    return name


def _forward(model: Any, batch: Batch, keep: torch.Tensor) -> Any:
    extra = {}
    if batch.example_bounds is not None:
        extra["documents"] = Documents.of(batch.example_bounds, batch.input_ids.device)
    return model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=batch.attention_mask,
        use_cache=False,
        logits_to_keep=keep,
        **extra,
    )


def _learnt(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(targets, keep, where): the learnt tokens, the positions that predict them, their flat indices."""
    targets = batch.labels[:, 1:]
    learnt = targets != IGNORE_INDEX
    keep = F.pad(learnt, (0, 1), value=False)  # position p predicts token p + 1; the last predicts nothing
    rows, positions = learnt.nonzero(as_tuple=True)
    where = rows * batch.labels.shape[1] + positions + 1
    return targets[learnt], keep, where


def supervised_logits(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, where): next-token logits at each position whose next token is learnt.

    `where` holds the flat indices (row * length + position) of the target tokens, so callers can
    look up per-token facts such as the speaker. The model is called as a whole (a boolean
    `logits_to_keep` picks the positions), so FSDP's hooks on the root module run as they must.
    """
    targets, keep, where = _learnt(batch)
    return _forward(model, batch, keep).logits.float(), targets, where


def supervised_hidden(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden states, output projection weight, targets) at the learnt positions, no logits made.

    A pre-hook takes the output head's input (the final hidden states, already cut to the learnt
    positions) and hands the head zero rows, so the model still runs whole and the projection
    happens in the loss.
    """
    targets, keep, _ = _learnt(batch)
    head = model.get_output_embeddings()
    taken: list[torch.Tensor] = []

    def take(module: Any, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        taken.append(inputs[0])
        return (inputs[0][..., :0, :], *inputs[1:])

    handle = head.register_forward_pre_hook(take)
    try:
        _forward(model, batch, keep)
    finally:
        handle.remove()
    hidden = taken[0].reshape(-1, taken[0].shape[-1])
    return hidden, head.weight, targets


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, `rows` positions at a time.

    The forward pass computes each slice's fp32 logits, its loss and at once its gradient, then lets
    the logits go: the backward pass only scales the saved gradients. Numerically it is the
    reference's path (a matmul in the weights' dtype, then fp32), slice by slice.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        ctx.weight_dtype = weight.dtype
        count = targets.numel()
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for start in range(0, count, rows):
            part = hidden[start : start + rows]
            logits = (part @ weight.t()).float()
            wanted = targets[start : start + rows]
            log_total = torch.logsumexp(logits, dim=-1)
            total += (log_total - logits.gather(1, wanted[:, None]).squeeze(1)).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            # d(mean loss)/d(logits) = (softmax − one-hot) / count, formed in place over the logits.
            grad = logits.sub_(log_total[:, None]).exp_()
            grad[torch.arange(grad.shape[0], device=grad.device), wanted] -= 1
            grad = grad.div_(count).to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + rows] = grad @ weight
            if grad_weight is not None:
                grad_weight += (grad.t() @ part).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_output.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None


def chunk_rows(vocabulary: int, budget_bytes: int = 2**28) -> int:
    """Positions per slice so that a slice's fp32 logits take about `budget_bytes` (256 MiB)."""
    return max(1, budget_bytes // (4 * vocabulary))


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, rows or chunk_rows(weight.shape[0]))


def liger_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except ImportError as error:
        raise RuntimeError("loss_implementation=liger needs the liger-kernel package (and Triton on a GPU)") from error
    return liger_fused_linear_cross_entropy(hidden, weight, targets, accum_dtype=torch.float32)


def supervised_loss(model: Any, batch: Batch, loss: str = "logits") -> torch.Tensor:
    """Mean cross-entropy over the learnt tokens of the batch, by the chosen `loss` implementation."""
    if loss == "logits":
        logits, targets, _ = supervised_logits(model, batch)
        return F.cross_entropy(logits, targets)
    hidden, weight, targets = supervised_hidden(model, batch)
    if loss == "chunked":
        return chunked_cross_entropy(hidden, weight, targets)
    if loss == "liger":
        return liger_cross_entropy(hidden, weight, targets)
    raise ValueError(f"loss_implementation={loss!r}: expected one of {', '.join(LOSSES)}")
