"""The loss chart a finished run sends to the owner: training and held-out loss per step (matplotlib)."""

from __future__ import annotations

import io


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
