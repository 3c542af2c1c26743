"""The trainer's plots (matplotlib, no display): the loss chart a finished run sends to the owner, and
the evaluation report's figures. Each is rendered to bytes; the callers store them."""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from typing import Any

from .report_statistics import COMPARED
from .style import turn_lengths


def loss_chart(
    train: list[tuple[int, float]],
    evaluation: list[tuple[int, float]],
    *,
    title: str,
    base_eval_loss: float | None = None,
) -> tuple[bytes, bytes]:
    """(SVG, PNG) of the loss curves; the base model's held-out loss is a dashed reference line."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=120)
    axes = figure.subplots()
    if train:
        steps, losses = zip(*train)
        axes.plot(steps, losses, color="#4c72b0", linewidth=1.2, label="training loss")
    if evaluation:
        steps, losses = zip(*evaluation)
        axes.plot(steps, losses, color="#dd8452", marker="o", linewidth=1.5, label="held-out loss")
    if base_eval_loss is not None:
        axes.axhline(base_eval_loss, color="#55a868", linestyle="--", linewidth=1, label="base model, held-out")
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per trained token)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    figure.tight_layout()
    rendered = []
    for kind in ("svg", "png"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=kind)
        rendered.append(buffer.getvalue())
    return rendered[0], rendered[1]


def evaluation_plots(samples: list[dict[str, Any]], summary: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG plots: reply lengths, messages per turn, and the distance of every metric to the real turns."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    by_model: dict[str, list[list[str]]] = defaultdict(list)
    for sample in samples:
        by_model[sample["model"]].append(sample["generated"])
    real = [s["real"] for s in samples if s["model"] == models[0]["key"]]
    series = [("real", real)] + [(m["label"], by_model.get(m["key"], [])) for m in models]

    def render(figure: Figure) -> bytes:
        buffer = io.BytesIO()
        if figure.get_layout_engine() is None:
            figure.tight_layout()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    out: dict[str, bytes] = {"lengths.png": render(lengths_figure(series))}

    figure = Figure(figsize=(8, 4.5), dpi=120, layout="constrained")
    axes = figure.subplots()
    counts = range(1, 7)
    width = 0.8 / len(series)
    for index, (label, turns) in enumerate(series):
        tally = Counter(min(len(t), 6) for t in turns)
        shares = [tally[c] / max(len(turns), 1) for c in counts]
        axes.bar([c + (index - len(series) / 2 + 0.5) * width for c in counts], shares, width=width, label=label)
    axes.set_xticks(list(counts), [str(c) for c in counts[:-1]] + ["6+"])
    axes.set_title("Messages per turn")
    axes.set_xlabel("messages in a row")
    axes.set_ylabel("share of turns")
    legend_outside(figure, len(series))
    out["messages_per_turn.png"] = render(figure)
    out["metrics.png"] = render(metrics_figure(summary, models))
    return out


def legend_outside(figure: Any, entries: int) -> None:
    """The legend in a row of its own under the plot, outside the axes: it never covers a bar."""
    figure.legend(loc="outside lower center", ncols=min(entries, 4), frameon=False)


def length_shares(lengths: list[int], bins: Any) -> Any:
    """Each bin's share of the turns (the shares sum to 1): what the lengths plot draws."""
    import numpy as np

    if not lengths:
        return np.zeros(len(bins) - 1)
    shares, _ = np.histogram(np.clip(lengths, 0, bins[-1]), bins=bins, weights=np.full(len(lengths), 1 / len(lengths)))
    return shares


def lengths_figure(series: list[tuple[str, list[list[str]]]]) -> Any:
    """Reply lengths per series as shares of its turns: the bins of each line sum to 1."""
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=120)
    axes = figure.subplots()
    longest = max([max(turn_lengths(turns), default=0) for _, turns in series] + [1])
    bins = np.linspace(0, min(longest, 400), 30)
    for label, turns in series:
        lengths = turn_lengths(turns)
        if not lengths:
            continue
        # Weights of 1/n: each bar is the share of this series' turns in that bin (not a density,
        # whose bars would sum to 1 only times the bin width).
        axes.stairs(length_shares(lengths, bins), bins, linewidth=1.6, label=label)
    axes.set_title("Reply length (characters per turn)")
    axes.set_xlabel("characters (the last bin holds everything longer)")
    axes.set_ylabel("share of turns")
    axes.legend()
    return figure


def metrics_figure(summary: dict[str, Any], models: list[dict[str, Any]]) -> Any:
    """Every measure's distance to the real turns per model, relative to the farthest model."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5), dpi=120, layout="constrained")
    axes = figure.subplots()
    names = [label for _, label, _ in COMPARED] + ["reply length (W1)", "discriminator |AUC−0.5|"]
    width = 0.8 / max(len(models), 1)
    rows = []
    for model in models:
        entry = summary["models"][model["key"]]
        rows.append(
            [entry["distances"][key] for key, _, _ in COMPARED]
            + [entry["length_distance"], abs(entry["discriminator"]["auc"] - 0.5)]
        )
    # Each measure's distances relative to the farthest model's: comparable bars on one axis.
    scale = [max(column) for column in zip(*rows)]
    for index, (model, raw) in enumerate(zip(models, rows)):
        values = [0 if (math.isnan(v) or not s or math.isnan(s)) else v / s for v, s in zip(raw, scale)]
        axes.barh([i + (index - len(models) / 2 + 0.5) * width for i in range(len(names))], values, height=width, label=model["label"])
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel("distance to the real turns (1 = the farthest model; shorter is more like you)")
    axes.set_title("How far each model is from the real turns")
    legend_outside(figure, len(models))
    return figure


MEMORY_LABELS = {
    "message_text": "message text:\ntrained with memory",
    "served": "same adapter:\nserved with memory",
    "probe": "turns that know\nthe context",
    "base": "base model:\nwith memory",
}


def memory_figure(comparison: dict[str, Any]) -> bytes:
    """PNG: each memory figure's difference in held-out loss (with − without) and its 95% interval;
    below the zero line, memory helps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [(key, comparison["figures"][key]) for key in MEMORY_LABELS if key in comparison["figures"]]
    figure = Figure(figsize=(8, 4.5), dpi=120, layout="constrained")
    axes = figure.subplots()
    positions = list(range(len(rows)))
    differences = [row["difference"] for _, row in rows]
    below = [row["difference"] - row["ci95"][0] for _, row in rows]
    above = [row["ci95"][1] - row["difference"] for _, row in rows]
    axes.errorbar(positions, differences, yerr=[below, above], fmt="o", color="#4c72b0", capsize=6, linewidth=1.5)
    axes.axhline(0, color="#555555", linewidth=1, linestyle="--")
    axes.set_xticks(positions, [MEMORY_LABELS[key] for key, _ in rows])
    axes.set_xlim(-0.5, len(rows) - 0.5)
    axes.set_ylabel("Δ held-out loss, nats/token (with − without)")
    axes.set_title(f"Memory: paired 95% intervals over held-out sessions, {comparison.get('seeds', 1)} seed(s)")
    axes.grid(axis="y", alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
