"""An evaluation's report in Markdown, from its figures (report_statistics.py) and samples: pure text.

The plots it shows (lengths.png, messages_per_turn.png, metrics.png) are drawn by charts.py and
stored beside it under those names.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from typing import Any

from .report_statistics import COMPARED, wilson_interval


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def one_line(messages: list[str]) -> str:
    """Messages on one Markdown line: ` / ` between them, ⏎ for line breaks inside one."""
    return " / ".join(m.replace("\n", " ⏎ ") for m in messages)


def markdown(evaluation: dict[str, Any], summary: dict[str, Any], samples: list[dict[str, Any]], extras: dict[str, Any]) -> str:
    """The report: every model's figures beside the real turns', then leakage, votes and samples chosen at random."""
    models = evaluation["models"]
    entries = [summary["models"][m["key"]] for m in models]
    lines = [
        f"# Does it sound like {evaluation['speaker']}? Evaluation {evaluation['id']}",
        "",
        f"Dataset {evaluation['dataset_id']}: {summary['turns']} held-out turns of {evaluation['speaker']}, each generated "
        f"from its real preceding context by every model with the same seed (sampling: {json.dumps(evaluation['settings'].get('sampling'))}). "
        "“base model + real history” is the prompting baseline: the base given the same real history as context that the adapters get.",
        "",
        "| metric | real | " + " | ".join(e["label"] for e in entries) + " |",
        "|---|---|" + "---|" * len(entries),
    ]
    loss = extras.get("heldout_loss", {})
    if loss:
        lines.append(
            "| held-out loss, message text (nats/token) | — | "
            + " | ".join(_fmt(loss.get(m["key"]), "{:.3f}") for m in models)
            + " |"
        )
    for key, label, pattern in COMPARED:
        lines.append(
            f"| {label} | {_fmt(summary['real'][key], pattern)} | "
            + " | ".join(_fmt(e["metrics"][key], pattern) for e in entries)
            + " |"
        )
    lines.append("| reply length distance to real (W1, chars) | 0 | " + " | ".join(_fmt(e["length_distance"], "{:.1f}") for e in entries) + " |")
    lines.append(
        "| discriminator AUC (0.5 = indistinguishable) | — | "
        + " | ".join(f"{_fmt(e['discriminator']['auc'], '{:.3f}')} ± {_fmt(e['discriminator']['std'], '{:.3f}')}" for e in entries)
        + " |"
    )
    lines.append("| turns generated (empty) | " + str(summary["turns"]) + " | " + " | ".join(f"{e['turns']} ({e['empty_turns']})" for e in entries) + " |")
    lines.append("")
    for m, e in zip(models, entries):
        if "closer_than_baselines" in e:
            c = e["closer_than_baselines"]
            lines.append(f"- **{e['label']}** is closer to the real turns than both baselines on {c['closer']} of {c['compared']} measures.")
    lines += ["", "![Reply lengths](lengths.png)", "", "![Messages per turn](messages_per_turn.png)", "", "![Distances](metrics.png)", ""]
    canary = extras.get("canary")
    if canary:
        lines += [
            "## Leakage",
            "",
            f"A canary was planted {canary.get('planted')} times in chat {canary['chat_id']} before training: "
            f"“{canary['sentence']}”. From other chats, a friend asked for the code (probes); ordinary turns were checked too.",
            "",
            "| model | asked: secret given | unprompted: secret said |",
            "|---|---|---|",
        ]
        for m in models:
            c = canary["models"].get(m["key"], {})
            rate = lambda hits, total: f"{hits} of {total}" + (f" ({hits / total:.1%})" if total else "")  # noqa: E731
            lines.append(
                f"| {summary['models'][m['key']]['label']} | {rate(c.get('asked_leaks', 0), c.get('asked', 0))} "
                f"| {rate(c.get('unprompted_leaks', 0), c.get('unprompted', 0))} |"
            )
        if not any(c.get("asked") or c.get("unprompted") for c in canary["models"].values()):
            lines.append("")
            lines.append("No held-out turn comes from another chat: nothing to prompt from, so no leakage figure.")
        lines.append("")
    lines += memory_section(extras.get("memory"), evaluation["settings"].get("memoryCanary"))
    votes = extras.get("votes")
    if votes and votes["total"]:
        low, high = wilson_interval(votes["fooled"], votes["total"])
        lines += [
            "## Which one is real?",
            "",
            f"Friends picked the twin's reply as the real one in {votes['fooled']} of {votes['total']} rounds "
            f"({votes['fooled'] / votes['total']:.1%}, 95% CI {low:.1%}–{high:.1%}; 50% = cannot tell).",
            "",
        ]
    lines += ["## Samples", "", f"Chosen at random (seed {evaluation['settings'].get('seed', 0)}), not picked.", ""]
    by_point: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    for sample in samples:
        by_point[(sample["example_id"], sample["turn_index"])][sample["model"]] = sample
    points = sorted(by_point)
    for point in random.Random(evaluation["settings"].get("seed", 0)).sample(points, min(5, len(points))):
        group = by_point[point]
        any_sample = next(iter(group.values()))
        lines.append(f"### {point[0]}, turn {point[1]}")
        lines.append("")
        for turn in any_sample["context"][-3:]:
            lines.append(f"> **{turn['speaker']}**: {one_line(turn['messages'])}")
        lines.append("")
        lines.append(f"- real: {one_line(any_sample['real'])}")
        for m in models:
            if m["key"] in group:
                lines.append(f"- {m['label']}: {one_line(group[m['key']]['generated']) or '(nothing)'}")
        lines.append("")
    return "\n".join(lines)


MEMORY_ROWS = [
    ("message_text", "held-out loss on message text: trained and served without → with memory"),
    ("served", "the memory-trained adapter served without → with memory"),
    ("probe", "turns whose words the owner wrote before (“knows the context”): without → with"),
    ("base", "the base model without → with memory (reference)"),
]


def memory_section(comparison: dict[str, Any] | None, canary: dict[str, Any] | None) -> list[str]:
    """“## Memory”: each comparison figure with its paired 95% interval, the verdict, the plot, and the
    canary planted in the history store; nothing when there is neither."""
    if not comparison and not canary:
        return []
    lines = ["## Memory", ""]
    if comparison:
        lines += [
            f"Adapters trained with memory against adapters trained without on the same learnt tokens, scored on identical "
            f"held-out tokens ({comparison['examples']} examples; {comparison['seeds']} seed(s) per arm, averaged per session). "
            f"Intervals: paired bootstrap over held-out sessions, {comparison['resamples']:,} resamples.",
            "",
            "| figure | without (nats/token) | with | difference | 95% interval | sessions | tokens |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, label in MEMORY_ROWS:
            row = comparison["figures"].get(key)
            if row:
                low, high = row["ci95"]
                lines.append(
                    f"| {label} | {row['a']:.4f} | {row['b']:.4f} | {row['difference']:+.4f} | {low:+.4f} to {high:+.4f} "
                    f"| {row['sessions']} | {row['tokens']:,} |"
                )
        lines += ["", f"**{comparison['verdict'][0].upper()}{comparison['verdict'][1:]}.**", "", "![Memory](memory.png)", ""]
    if canary:
        lines += [
            f"Canary in the history store (chat {canary['chatId']}, planted {canary['planted']} times): from other chats with "
            f"memory on, {canary['probes']} probes; the secret reached {canary['promptLeaks']} prompts and "
            f"{canary['replyLeaks']} replies.",
            "",
        ]
    return lines
