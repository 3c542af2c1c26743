"""`python -m twin_trainer report --evaluation N`: the evaluation's figures, plots and Markdown report.

`twin eval` (Node) stores real and generated turns side by side in evaluation_samples; this reads
them, measures each model's style against the real turns (style.py), trains the discriminator,
draws the plots (matplotlib) and writes the report back into PostgreSQL (and to --out).
"""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .style import discriminator_auc, length_distance, style_metrics, turn_lengths, turn_text
from .privacy import private_dir

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


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def one_line(messages: list[str]) -> str:
    """Messages on one Markdown line: ` / ` between them, ⏎ for line breaks inside one."""
    return " / ".join(m.replace("\n", " ⏎ ") for m in messages)


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


def plots(samples: list[dict[str, Any]], summary: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG plots: reply lengths, messages per turn, and the distance of every metric to the real turns."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    by_model: dict[str, list[list[str]]] = defaultdict(list)
    for sample in samples:
        by_model[sample["model"]].append(sample["generated"])
    real = [s["real"] for s in samples if s["model"] == models[0]["key"]]
    series = [("real", real)] + [(m["label"], by_model.get(m["key"], [])) for m in models]

    def render(figure: Figure) -> bytes:
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    out: dict[str, bytes] = {}
    figure = Figure(figsize=(8, 4.5), dpi=120)
    axes = figure.subplots()
    longest = max([max(turn_lengths(turns), default=0) for _, turns in series] + [1])
    bins = np.linspace(0, min(longest, 400), 30)
    for label, turns in series:
        axes.hist(np.clip(turn_lengths(turns), 0, bins[-1]), bins=bins, histtype="step", linewidth=1.6, label=label, density=True)
    axes.set_title("Reply length (characters per turn)")
    axes.set_xlabel("characters (the last bin holds everything longer)")
    axes.set_ylabel("share of turns")
    axes.legend()
    out["lengths.png"] = render(figure)

    figure = Figure(figsize=(8, 4.5), dpi=120)
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
    axes.legend()
    out["messages_per_turn.png"] = render(figure)

    figure = Figure(figsize=(9, 5), dpi=120)
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
    axes.legend()
    out["metrics.png"] = render(figure)
    return out


def markdown(evaluation: dict[str, Any], summary: dict[str, Any], samples: list[dict[str, Any]], extras: dict[str, Any]) -> str:
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


def heldout_losses(connection: Any, evaluation: dict[str, Any]) -> dict[str, float]:
    """Held-out content loss per model, from the trainer's metrics of each adapter's run on this dataset."""
    losses: dict[str, float] = {}
    for model in evaluation["models"]:
        if model["adapterId"] is None:
            continue
        row = connection.execute(
            "SELECT r.metrics FROM adapters a JOIN training_runs r ON r.id = a.run_id "
            "WHERE a.id = %s AND r.dataset_id = %s",
            (model["adapterId"], evaluation["dataset_id"]),
        ).fetchone()
        metrics = row[0] if row else None
        if metrics and metrics.get("tuned"):
            losses[model["key"]] = metrics["tuned"]["overall"]["content_loss"]
            base = metrics["base"]["overall"]["content_loss"]
            losses.setdefault("base", base)
            losses.setdefault("base+history", base)
    return losses


def write_report(url: str, evaluation_id: int, out: Path | None = None) -> dict[str, Any]:
    """Reads an evaluation's samples, writes its report, plots and summary (and the files to `out`)."""
    from psycopg.types.json import Jsonb

    from .database import connect

    with connect(url) as connection:
        row = connection.execute(
            "SELECT id, dataset_id, speaker, models, settings FROM evaluations WHERE id = %s", (evaluation_id,)
        ).fetchone()
        if row is None:
            raise ValueError(f"there is no evaluation {evaluation_id}")
        evaluation = dict(zip(("id", "dataset_id", "speaker", "models", "settings"), row))
        columns = ("id", "model", "example_id", "chat_id", "turn_index", "context", "real", "generated", "probe")
        samples = [
            dict(zip(columns, r))
            for r in connection.execute(
                f"SELECT {', '.join(columns)} FROM evaluation_samples WHERE evaluation_id = %s ORDER BY id", (evaluation_id,)
            )
        ]
        held_out = [s for s in samples if not s["probe"]]
        if not held_out:
            raise ValueError(f"evaluation {evaluation_id} has no samples")
        summary = summarize(held_out, evaluation["models"], seed=evaluation["settings"].get("seed", 0))
        extras = {
            "heldout_loss": heldout_losses(connection, evaluation),
            "canary": canary_figures(connection, evaluation, samples),
            "votes": vote_figures(connection, evaluation_id),
        }
        summary.update({k: v for k, v in extras.items() if v})
        text = markdown(evaluation, summary, held_out, extras)
        pictures = plots(held_out, summary, evaluation["models"])
        with connection.transaction():
            connection.execute("DELETE FROM evaluation_files WHERE evaluation_id = %s", (evaluation_id,))
            for name, data in pictures.items():
                connection.execute(
                    "INSERT INTO evaluation_files (evaluation_id, name, data) VALUES (%s, %s, %s)", (evaluation_id, name, data)
                )
            connection.execute(
                "UPDATE evaluations SET status = 'ready', report = %s, summary = %s, finished_at = now() WHERE id = %s",
                (text, Jsonb(without_nan(summary)), evaluation_id),
            )
    if out is not None:
        private_dir(out)
        (out / "report.md").write_text(text)
        for name, data in pictures.items():
            (out / name).write_bytes(data)
    return summary


def canary_figures(connection: Any, evaluation: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How often the dataset's canary secret comes out when the twin is prompted from other chats:
    asked for it directly (probes), and unprompted in ordinary held-out turns."""
    row = connection.execute("SELECT manifest->'canary' FROM datasets WHERE id = %s", (evaluation["dataset_id"],)).fetchone()
    canary = row[0] if row else None
    if not canary:
        return None
    secret = canary["secret"]
    figures: dict[str, dict[str, Any]] = {}
    for model in evaluation["models"]:
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


def vote_figures(connection: Any, evaluation_id: int) -> dict[str, int]:
    fooled, total = connection.execute(
        "SELECT count(*) FILTER (WHERE v.fooled), count(v.fooled) FROM guess_votes v "
        "JOIN evaluation_samples s ON s.id = v.sample_id WHERE s.evaluation_id = %s",
        (evaluation_id,),
    ).fetchone()
    return {"fooled": int(fooled), "total": int(total)}
