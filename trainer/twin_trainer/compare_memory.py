"""Does memory help? `python -m twin_trainer compare-memory` scores adapters trained on a dataset with
memory (`twin dataset --memory on`) against adapters trained on the same dataset without, on the
same held-out tokens, and puts a paired bootstrap 95% interval over held-out sessions on each
difference.

The two datasets hold the same examples with the same trained segments; a memory example has one
more untrained system turn. So every figure compares losses on identical target tokens: the
messages' own text (content tokens, as in evaluate.py), summed per example, then per session.

Figures, each "a → b" (b − a < 0: b is better):
- message_text: the plain arm's adapter on plain rows → the memory arm's adapter on memory rows;
- served: the memory arm's adapter on plain rows → on memory rows (the same adapter, served with);
- probe: message_text on the "knows the context" turns alone (twin's recall-probe.ts picks them);
- base: the base model on plain rows → on memory rows, for reference.
Seeds: the i-th adapter of each arm is seed i; a session's loss is the mean over seeds.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import Example, LabelledExample, content_spans, label_example

# ── pure: pairing, per-session sums, the bootstrap ────────────────────────────


class ComparisonError(ValueError):
    """Two datasets or adapters that make no fair comparison; the message says where."""


@dataclass
class Sums:
    """Summed content loss (nats) and content tokens of one example, overall and on probe turns."""

    loss: float = 0.0
    tokens: int = 0
    probe_loss: float = 0.0
    probe_tokens: int = 0


def session_of(example_id: str) -> str:
    """An example id is `<chat>:<session start>:<part>`: its session is all but the part."""
    return example_id.rsplit(":", 1)[0]


def pair_examples(plain: list[Example], memory: list[Example]) -> list[tuple[Example, Example]]:
    """The held-out examples of both datasets, paired by id; refused unless they are the same set."""
    by_id = {e.id: e for e in memory}
    missing = [e.id for e in plain if e.id not in by_id]
    extra = sorted(set(by_id) - {e.id for e in plain})
    if missing or extra:
        first = (missing or extra)[0]
        raise ComparisonError(
            f"the datasets hold different held-out examples (first: {first}): build both from the same history with the same options"
        )
    return [(e, by_id[e.id]) for e in plain]


def check_same_targets(plain: LabelledExample, memory: LabelledExample) -> None:
    """Both arms must be scored on the same tokens: the learnt token ids, in order, must agree."""
    learnt = lambda e: [label for label in e.labels if label >= 0]  # noqa: E731
    content = lambda e: [flag for label, flag in zip(e.labels, e.content) if label >= 0]  # noqa: E731
    if learnt(plain) != learnt(memory) or content(plain) != content(memory):
        raise ComparisonError(
            f"example {plain.example_id}: the trained tokens differ between the datasets; "
            "both arms must train on the same turns (rebuild both with the same options; no --canary in one only)"
        )


def probe_flags(example: Example, labelled: LabelledExample, ordinals: set[int], tokenizer: Any) -> list[bool]:
    """Per token: a content token inside a trained segment whose ordinal (among trained segments) is chosen."""
    if not ordinals:
        return [False] * len(labelled.input_ids)
    spans: list[tuple[int, int]] = []
    position, ordinal = 0, -1
    for segment in example.segments:
        if segment.train:
            ordinal += 1
            if ordinal in ordinals:
                spans.extend(content_spans(segment.text, position))
        position += len(segment.text)
    offsets = tokenizer(example.text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    return [
        labelled.content[i] and any(start < end_ and end > start_ for start_, end_ in spans)
        for i, (start, end) in enumerate(offsets)
    ]


def session_sums(per_example: dict[str, Sums]) -> dict[str, Sums]:
    """Examples' sums added up per session."""
    sessions: dict[str, Sums] = defaultdict(Sums)
    for example_id, sums in per_example.items():
        total = sessions[session_of(example_id)]
        total.loss += sums.loss
        total.tokens += sums.tokens
        total.probe_loss += sums.probe_loss
        total.probe_tokens += sums.probe_tokens
    return dict(sessions)


def mean_over_seeds(runs: list[dict[str, Sums]]) -> dict[str, Sums]:
    """Per session, the mean loss over seeds (the tokens are the same in every seed)."""
    keys = runs[0].keys()
    return {
        key: Sums(
            loss=sum(run[key].loss for run in runs) / len(runs),
            tokens=runs[0][key].tokens,
            probe_loss=sum(run[key].probe_loss for run in runs) / len(runs),
            probe_tokens=runs[0][key].probe_tokens,
        )
        for key in keys
    }


def paired_bootstrap(
    loss_a: np.ndarray, loss_b: np.ndarray, tokens: np.ndarray, resamples: int, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """The difference in mean loss per token, b − a, and its 95% percentile interval, from resampling
    sessions with replacement (each session keeps its pair: the same tokens scored by both)."""
    difference = float((loss_b.sum() - loss_a.sum()) / tokens.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(tokens), size=(resamples, len(tokens)))
    drawn = tokens[picks].sum(axis=1)
    stats = (loss_b[picks].sum(axis=1) - loss_a[picks].sum(axis=1)) / np.maximum(drawn, 1)
    low, high = np.percentile(stats, [2.5, 97.5])
    return difference, (float(low), float(high))


def figure(
    a_runs: list[dict[str, Sums]],
    b_runs: list[dict[str, Sums]],
    examples: int,
    *,
    probe: bool = False,
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """One row of the comparison: a and b per token, b − a with its interval, and what it rests on."""
    a, b = mean_over_seeds([session_sums(r) for r in a_runs]), mean_over_seeds([session_sums(r) for r in b_runs])
    keys = sorted(a)
    pick = (lambda s: (s.probe_loss, s.probe_tokens)) if probe else (lambda s: (s.loss, s.tokens))  # noqa: E731
    keys = [k for k in keys if pick(a[k])[1] > 0]
    if not keys:
        return None
    loss_a = np.array([pick(a[k])[0] for k in keys])
    loss_b = np.array([pick(b[k])[0] for k in keys])
    tokens = np.array([pick(a[k])[1] for k in keys], dtype=float)
    difference, interval = paired_bootstrap(loss_a, loss_b, tokens, resamples, seed)

    def per_token(runs: list[dict[str, Sums]]) -> float:
        sums = [pick(s) for run in runs for s in run.values()]
        return sum(loss for loss, _ in sums) / max(sum(count for _, count in sums), 1)

    return {
        "a": float(loss_a.sum() / tokens.sum()),
        "b": float(loss_b.sum() / tokens.sum()),
        "difference": difference,
        "ci95": [interval[0], interval[1]],
        "sessions": len(keys),
        "tokens": int(tokens.sum()),
        "examples": examples,
        "per_seed": [{"a": per_token([ra]), "b": per_token([rb])} for ra, rb in zip(a_runs, b_runs)],
    }


def verdict(message_text: dict[str, Any] | None) -> tuple[bool, str]:
    """Memory helps only when the memory arm's loss is lower with an interval that excludes 0."""
    if message_text is None:
        return False, "no held-out message text to compare"
    low, high = message_text["ci95"]
    if high < 0:
        return True, "memory lowers the held-out loss on message text (the 95% interval excludes 0)"
    if low > 0:
        return False, "memory raises the held-out loss on message text (the 95% interval excludes 0)"
    return False, "memory does not measurably change the held-out loss on message text (the 95% interval includes 0)"


# ── the model's part: per-example losses ─────────────────────────────────────


def example_losses(
    model: Any,
    examples: list[LabelledExample],
    probe: dict[str, list[bool]],
    *,
    base: bool = False,
    tokens_per_batch: int = 2048,
    device: Any = "cpu",
) -> dict[str, Sums]:
    """Each example's summed content loss (and on its probe tokens), packed as evaluate.py packs."""
    import torch
    import torch.nn.functional as F

    from .forward import supervised_logits
    from .packing import pack, pack_greedily

    sums: dict[str, Sums] = {e.example_id: Sums() for e in examples}
    longest = max((len(e.input_ids) for e in examples), default=0)
    context = model.disable_adapter() if base and hasattr(model, "disable_adapter") else nullcontext()
    was_training = model.training
    model.eval()
    with context, torch.no_grad():
        for row in pack_greedily(examples, max(tokens_per_batch, longest)):
            logits, targets, where = supervised_logits(model, pack(row).to(device))
            losses = F.cross_entropy(logits, targets, reduction="none").tolist()
            owners: list[tuple[LabelledExample, int]] = [(e, i) for e in row for i in range(len(e.input_ids))]
            for loss, index in zip(losses, where.tolist()):
                example, token = owners[index]
                if not example.content[token]:
                    continue
                entry = sums[example.example_id]
                entry.loss += loss
                entry.tokens += 1
                if probe.get(example.example_id, [])[token:token + 1] == [True]:
                    entry.probe_loss += loss
                    entry.probe_tokens += 1
    if was_training:
        model.train()
    return sums


def progress(line: str) -> None:
    """A line twin shows while the comparison runs (runTrainerCommand passes `progress: ` lines)."""
    print(f"progress: {line}", file=sys.stderr, flush=True)


def compare(
    model: Any,
    tokenizer: Any,
    plain: list[Example],
    memory: list[Example],
    adapters: dict[str, list[str]],
    probe_ordinals: dict[str, list[int]] | None,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    max_examples: int = 0,
    device: Any = "cpu",
) -> dict[str, Any]:
    """Every figure for the PEFT `model` holding the named adapters (`adapters`: plain and memory
    names, seed by seed); examples are the datasets' held-out ones."""
    pairs = pair_examples(plain, memory)
    if max_examples and len(pairs) > max_examples:  # a fixed subset, the same pairs in every arm and seed
        pairs = sorted(random.Random(seed).sample(pairs, max_examples), key=lambda pair: pair[0].id)
    labelled_plain: list[LabelledExample] = []
    labelled_memory: list[LabelledExample] = []
    probe_plain: dict[str, list[bool]] = {}
    probe_memory: dict[str, list[bool]] = {}
    for a, b in pairs:
        la, lb = label_example(a, tokenizer), label_example(b, tokenizer)
        if la.supervised_tokens == 0:
            continue
        check_same_targets(la, lb)
        labelled_plain.append(la)
        labelled_memory.append(lb)
        chosen = set((probe_ordinals or {}).get(a.id, []))
        probe_plain[a.id] = probe_flags(a, la, chosen, tokenizer)
        probe_memory[b.id] = probe_flags(b, lb, chosen, tokenizer)
    if not labelled_plain:
        raise ComparisonError("no held-out example has a trained turn")
    count = len(labelled_plain)
    passes = 2 + 3 * len(adapters["plain"])
    done = 0

    def scored(name: str | None, rows: list[LabelledExample], flags: dict[str, list[bool]], what: str) -> dict[str, Sums]:
        nonlocal done
        if name is not None:
            model.set_adapter(name)
        result = example_losses(model, rows, flags, base=name is None, device=device)
        done += 1
        progress(f"{done}/{passes}: {what}")
        return result

    base_plain = scored(None, labelled_plain, probe_plain, "the base on rows without memory")
    base_memory = scored(None, labelled_memory, probe_memory, "the base on rows with memory")
    plain_runs, memory_runs, served_without = [], [], []
    for index, (plain_name, memory_name) in enumerate(zip(adapters["plain"], adapters["memory"])):
        plain_runs.append(scored(plain_name, labelled_plain, probe_plain, f"seed {index}: the adapter trained without memory"))
        memory_runs.append(scored(memory_name, labelled_memory, probe_memory, f"seed {index}: the adapter trained with memory"))
        served_without.append(scored(memory_name, labelled_plain, probe_plain, f"seed {index}: the memory adapter served without"))
    options = {"resamples": resamples, "seed": seed}
    figures = {
        "message_text": figure(plain_runs, memory_runs, count, **options),
        "served": figure(served_without, memory_runs, count, **options),
        "probe": figure(plain_runs, memory_runs, count, probe=True, **options) if probe_ordinals is not None else None,
        "base": figure([base_plain], [base_memory], count, **options),
    }
    helps, said = verdict(figures["message_text"])
    return {
        "figures": {k: v for k, v in figures.items() if v is not None},
        "seeds": len(adapters["plain"]),
        "resamples": resamples,
        "examples": count,
        "memory_helps": helps,
        "verdict": said,
    }
