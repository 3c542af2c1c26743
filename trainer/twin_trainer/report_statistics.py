"""An evaluation's figures, as pure functions of its samples: each model's style against the real
turns, whether an adapter is closer to them than the baselines, the held-out loss, leakage of the
canary and the votes' confidence interval. No database, no plots: report.py reads and writes.

A sample is one held-out turn (or canary probe) as one model answered it: a dict with the columns
of evaluation_samples (model, example_id, chat_id, turn_index, context, real, generated, probe).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from .style import discriminator_auc, length_distance, style_metrics, turn_text

# The metrics compared with the real turns, in the report's order, with how to print them.
COMPARED = [
    ("messages_per_turn", "messages per turn", "{:.2f}"),
    ("characters_per_message", "characters per message", "{:.1f}"),
    ("words_per_message", "words per message", "{:.1f}"),
    ("question_rate", "question rate", "{:.1%}"),
    ("emoji_rate", "emoji rate", "{:.1%}"),
    ("sticker_rate", "sticker rate", "{:.1%}"),
    ("cyrillic_share", "Cyrillic share of letters", "{:.1%}"),
    ("lowercase_first_rate", "lowercase first letter", "{:.1%}"),
    ("trailing_period_rate", "trailing period", "{:.1%}"),
    ("distinct_1", "distinct-1", "{:.3f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
]


def without_nan(value: Any) -> Any:
    """JSON has no NaN: metrics that do not apply (no messages, no letters) are stored as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sound for small samples and rates near 0 or 1)."""
    if total == 0:
        return (float("nan"), float("nan"))
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(samples: list[dict[str, Any]], models: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Per model: style metrics of its turns, distances to the real ones, the discriminator's AUC."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        by_model[sample["model"]].append(sample)
    first = by_model[models[0]["key"]] if models else []
    real_turns = [s["real"] for s in first]
    real = style_metrics(real_turns)
    result: dict[str, Any] = {"real": real, "turns": len(real_turns), "models": {}}
    for model in models:
        rows = by_model.get(model["key"], [])
        generated = [s["generated"] for s in rows]
        metrics = style_metrics(generated)
        distances = {key: abs(metrics[key] - real[key]) for key, _, _ in COMPARED}
        nonempty = [turn_text(t) for t in generated if t]
        result["models"][model["key"]] = {
            "label": model["label"],
            "turns": len(generated),
            "empty_turns": sum(1 for t in generated if not t),
            "metrics": metrics,
            "distances": distances,
            "length_distance": length_distance(real_turns, [t for t in generated if t]),
            "discriminator": discriminator_auc([turn_text(t) for t in real_turns], nonempty, seed=seed),
        }
    baselines = [result["models"][k] for k in ("base", "base+history") if k in result["models"]]
    for key, entry in result["models"].items():
        if not key.startswith("adapter:") or not baselines:
            continue
        closer, compared = 0, 0
        for metric, _, _ in COMPARED:
            mine = entry["distances"][metric]
            theirs = [b["distances"][metric] for b in baselines]
            if any(math.isnan(v) for v in [mine, *theirs]):
                continue
            compared += 1
            closer += mine < min(theirs)
        for name, mine, theirs in (
            ("length", entry["length_distance"], [b["length_distance"] for b in baselines]),
            ("discriminator", abs(entry["discriminator"]["auc"] - 0.5), [abs(b["discriminator"]["auc"] - 0.5) for b in baselines]),
        ):
            if not any(math.isnan(v) for v in [mine, *theirs]):
                compared += 1
                closer += mine < min(theirs)
        entry["closer_than_baselines"] = {"closer": closer, "compared": compared}
    return result


def heldout_losses(models: list[dict[str, Any]], run_metrics: dict[str, dict[str, Any] | None]) -> dict[str, float]:
    """Held-out content loss per model, from the trainer's metrics of each adapter's run (by model key);
    the base's, from the first run that has them, stands for both baselines."""
    losses: dict[str, float] = {}
    for model in models:
        metrics = run_metrics.get(model["key"])
        if metrics and metrics.get("tuned"):
            losses[model["key"]] = metrics["tuned"]["overall"]["content_loss"]
            base = metrics["base"]["overall"]["content_loss"]
            losses.setdefault("base", base)
            losses.setdefault("base+history", base)
    return losses


def canary_figures(
    canary: dict[str, Any] | None, models: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """How often the dataset's canary secret comes out when the twin is prompted from other chats:
    asked for it directly (probes), and unprompted in ordinary held-out turns. None without a canary."""
    if not canary:
        return None
    secret = canary["secret"]
    figures: dict[str, dict[str, Any]] = {}
    for model in models:
        elsewhere = [s for s in samples if s["model"] == model["key"] and s["chat_id"] != canary["chatId"]]
        asked = [s for s in elsewhere if s["probe"]]
        unprompted = [s for s in elsewhere if not s["probe"]]
        leaked = lambda rows: sum(secret in turn_text(s["generated"]) for s in rows)  # noqa: E731
        figures[model["key"]] = {
            "asked": len(asked),
            "asked_leaks": leaked(asked),
            "unprompted": len(unprompted),
            "unprompted_leaks": leaked(unprompted),
        }
    return {"chat_id": canary["chatId"], "sentence": canary["sentence"], "planted": canary.get("planted"), "models": figures}
