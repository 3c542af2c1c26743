"""`python -m twin_trainer report --evaluation N`: the evaluation's figures, plots and Markdown report.

`twin eval` (Node) stores real and generated turns side by side in evaluation_samples; this reads
them (database.py), measures each model's style against the real turns (report_statistics.py),
draws the plots (charts.py), renders the report (report_markdown.py) and writes it back into
PostgreSQL (and to --out). Reading and writing are here; everything between is pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import database
from .charts import evaluation_plots, memory_figure
from .privacy import private_dir
from .report_markdown import markdown
from .report_statistics import canary_figures, heldout_losses, summarize, without_nan


def write_report(
    url: str, evaluation_id: int, out: Path | None = None, memory: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Reads an evaluation's samples, writes its report, plots and summary (and the files to `out`);
    `memory`: what `compare-memory` measured, shown in the report's memory section."""
    with database.connect(url) as connection:
        # ── read ──
        evaluation = database.read_evaluation(connection, evaluation_id)
        if evaluation is None:
            raise ValueError(f"there is no evaluation {evaluation_id}")
        samples = database.read_evaluation_samples(connection, evaluation_id)
        held_out = [s for s in samples if not s["probe"]]
        if not held_out:
            raise ValueError(f"evaluation {evaluation_id} has no samples")
        models = evaluation["models"]
        run_metrics = {
            m["key"]: database.adapter_run_metrics(connection, m["adapterId"], evaluation["dataset_id"])
            for m in models
            if m["adapterId"] is not None
        }
        canary = database.dataset_canary(connection, evaluation["dataset_id"])
        votes = database.vote_counts(connection, evaluation_id)

        # ── measure, draw, render ──
        summary = summarize(held_out, models, seed=evaluation["settings"].get("seed", 0))
        extras = {
            "heldout_loss": heldout_losses(models, run_metrics),
            "canary": canary_figures(canary, models, samples),
            "votes": votes,
            "memory": memory,
        }
        summary.update({k: v for k, v in extras.items() if v})
        text = markdown(evaluation, summary, held_out, extras)
        pictures = evaluation_plots(held_out, summary, models)
        if memory:
            pictures["memory.png"] = memory_figure(memory)

        # ── write ──
        database.store_report(connection, evaluation_id, text, without_nan(summary), pictures)
    if out is not None:
        private_dir(out)
        (out / "report.md").write_text(text)
        for name, data in pictures.items():
            (out / name).write_bytes(data)
    return summary
