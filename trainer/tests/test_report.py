"""The evaluation report: its figures are pure functions of the samples, and `python -m twin_trainer
report` reads an evaluation from PostgreSQL and writes its report, plots and summary back (the
end-to-end run with real generations is test/eval.test.ts; here the samples are made by hand)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import twin
from psycopg.types.json import Jsonb

from twin_trainer.report_markdown import markdown
from twin_trainer.report_statistics import canary_figures, heldout_losses, summarize, wilson_interval, without_nan

TRAINER = Path(__file__).resolve().parents[1]
SECRET = "kiwi-4471"
MODELS = [
    {"key": "base", "label": "base model", "adapterId": None, "history": False},
    {"key": "base+history", "label": "base model + real history", "adapterId": None, "history": True},
    {"key": "adapter:1", "label": "run-1", "adapterId": 1, "history": True},
]
REAL = [["привет", "как ты?"], ["ok"], ["see you tomorrow", "bye 👋"], ["lol"], ["да, давай"], ["no idea"]] * 2
GENERATED = {
    # The baselines write long, formal single messages; the adapter writes like the real turns.
    "base": [["Hello! I am doing well, thank you for asking. How can I help you today?"]] * len(REAL),
    "base+history": [["Certainly. Here is a detailed answer to your question about tomorrow."]] * len(REAL),
    "adapter:1": [turn[::-1] for turn in REAL[:-1]] + [[]],
}


def samples(probes: bool = False) -> list[dict]:
    rows = []
    for model in MODELS:
        for index, real in enumerate(REAL):
            context = [{"speaker": "Friend", "messages": [f"hey {index}"]}]
            rows.append({"model": model["key"], "example_id": f"e{index // 3}", "chat_id": 10 + index % 2,
                         "turn_index": index % 3, "context": context, "real": real,
                         "generated": GENERATED[model["key"]][index], "probe": False})  # fmt: skip
        if probes:
            said = ["the code is " + SECRET] if model["key"] == "adapter:1" else ["what code?"]
            rows.append({"model": model["key"], "example_id": "probe", "chat_id": 11, "turn_index": 0,
                         "context": [], "real": [], "generated": said, "probe": True})  # fmt: skip
    return rows


@pytest.mark.unit
def test_the_wilson_interval_matches_known_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson_interval(0, 10)[0] == 0.0 and all(math.isnan(v) for v in wilson_interval(0, 0))


@pytest.mark.unit
def test_an_adapter_that_writes_like_the_real_turns_is_closer_than_both_baselines():
    summary = summarize(samples(), MODELS)
    assert summary["turns"] == len(REAL)
    adapter = summary["models"]["adapter:1"]
    assert (adapter["turns"], adapter["empty_turns"]) == (len(REAL), 1)
    closer = adapter["closer_than_baselines"]
    assert closer["compared"] >= 10 and closer["closer"] > closer["compared"] / 2, closer
    assert "closer_than_baselines" not in summary["models"]["base"], "baselines are not compared with themselves"
    assert json.dumps(without_nan(summary), allow_nan=False), "the summary is storable as JSON"


@pytest.mark.unit
def test_held_out_losses_come_from_the_adapters_runs_and_the_base_s_stands_for_both_baselines():
    metrics = {"tuned": {"overall": {"content_loss": 2.5}}, "base": {"overall": {"content_loss": 3.25}}}
    assert heldout_losses(MODELS, {"adapter:1": metrics}) == {"adapter:1": 2.5, "base": 3.25, "base+history": 3.25}
    assert heldout_losses(MODELS, {"adapter:1": None}) == {}


@pytest.mark.unit
def test_the_canary_counts_what_each_model_said_outside_its_chat():
    canary = {"secret": SECRET, "chatId": 10, "sentence": f"the code is {SECRET}", "planted": 3}
    figures = canary_figures(canary, MODELS, samples(probes=True))
    assert figures["models"]["adapter:1"] == {"asked": 1, "asked_leaks": 1, "unprompted": 6, "unprompted_leaks": 0}
    assert figures["models"]["base"]["asked_leaks"] == 0 and figures["planted"] == 3
    assert canary_figures(None, MODELS, samples(probes=True)) is None


@pytest.mark.unit
def test_the_markdown_report_has_the_table_the_leakage_the_votes_and_samples():
    held_out = samples()
    summary = summarize(held_out, MODELS)
    evaluation = {"id": 4, "dataset_id": 2, "speaker": "Me", "models": MODELS, "settings": {"seed": 0, "sampling": {"temperature": 0.7}}}
    canary = canary_figures({"secret": SECRET, "chatId": 10, "sentence": "s", "planted": 2}, MODELS, samples(probes=True))
    text = markdown(evaluation, summary, held_out, {"heldout_loss": {"adapter:1": 2.5}, "canary": canary, "votes": {"fooled": 3, "total": 8}})
    assert text.startswith("# Does it sound like Me? Evaluation 4\n")
    assert "| held-out loss, message text (nats/token) | — | — | — | 2.500 |" in text
    assert "- **run-1** is closer to the real turns than both baselines on" in text
    assert "## Leakage" in text and "| run-1 | 1 of 1 (100.0%) | 0 of 6 (0.0%) |" in text
    assert "in 3 of 8 rounds (37.5%, 95% CI" in text
    assert text.count("- real: ") == 5, "five points chosen at random, each with the real turn"


@pytest.fixture(scope="module")
def evaluation(database_url, tmp_path_factory):
    """A migrated database with one evaluation of three models, its samples, a canary and votes."""
    twin(["migrate"], database_url, tmp_path_factory.mktemp("twin"))
    with psycopg.connect(database_url, autocommit=True) as connection:
        base = connection.execute(
            "INSERT INTO base_models (name, gguf_path, architecture, layers, fingerprint, size_mb) "
            "VALUES ('m', '/m.gguf', 'llama', 2, 'f', 1) RETURNING id"
        ).fetchone()[0]
        canary = {"chatId": 10, "secret": SECRET, "sentence": f"the code is {SECRET}", "planted": 2}
        dataset = connection.execute(
            "INSERT INTO datasets (status, format_version, settings, manifest) VALUES ('ready', 1, '{}', %s) RETURNING id",
            (Jsonb({"formatVersion": 1, "canary": canary}),),
        ).fetchone()[0]
        metrics = {"tuned": {"overall": {"content_loss": 2.5}}, "base": {"overall": {"content_loss": 3.25}}}
        run = connection.execute(
            "INSERT INTO training_runs (status, dataset_id, base_model_id, config, metrics) "
            "VALUES ('succeeded', %s, %s, '{}', %s) RETURNING id",
            (dataset, base, Jsonb(metrics)),
        ).fetchone()[0]
        adapter = connection.execute(
            "INSERT INTO adapters (run_id, base_model_id, kind, store_path, sha256, bytes, name) "
            "VALUES (%s, %s, 'full', 'run/m.gguf', 'x', 1, 'run-1') RETURNING id",
            (run, base),
        ).fetchone()[0]
        models = [{**m, "key": f"adapter:{adapter}", "adapterId": adapter} if m["adapterId"] else m for m in MODELS]

        def add(settings):
            return connection.execute(
                "INSERT INTO evaluations (dataset_id, speaker, models, settings, status) VALUES (%s, 'Me', %s, %s, 'running') RETURNING id",
                (dataset, Jsonb(models), Jsonb(settings)),
            ).fetchone()[0]

        evaluation = add({"seed": 0, "sampling": {"temperature": 0.7}})
        ids = []
        for sample in samples(probes=True):
            key = f"adapter:{adapter}" if sample["model"] == "adapter:1" else sample["model"]
            ids.append(connection.execute(
                "INSERT INTO evaluation_samples (evaluation_id, model, example_id, chat_id, turn_index, context, real, "
                "generated, seed, probe) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s) RETURNING id",
                (evaluation, key, sample["example_id"], sample["chat_id"], sample["turn_index"], Jsonb(sample["context"]),
                 Jsonb(sample["real"]), Jsonb(sample["generated"]), sample["probe"]),
            ).fetchone()[0])  # fmt: skip
        for person, fooled in enumerate([True, False, None]):
            connection.execute(
                "INSERT INTO guess_votes (sample_id, person_id, real_position, fooled) VALUES (%s, %s, 0, %s)",
                (ids[0], person, fooled),
            )
        empty = add({"seed": 0})
    return {"url": database_url, "id": evaluation, "empty": empty}


def report(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "twin_trainer", "report", *args], cwd=TRAINER, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_report_command_writes_the_report_plots_and_summary_back(evaluation, tmp_path):
    done = report(evaluation["url"], "--evaluation", str(evaluation["id"]), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"event": "report", "evaluation": evaluation["id"], "turns": len(REAL)}
    with psycopg.connect(evaluation["url"]) as connection:
        status, text, summary = connection.execute(
            "SELECT status, report, summary FROM evaluations WHERE id = %s", (evaluation["id"],)
        ).fetchone()
        files = dict(connection.execute(
            "SELECT name, data FROM evaluation_files WHERE evaluation_id = %s", (evaluation["id"],)
        ).fetchall())  # fmt: skip
    assert status == "ready"
    assert text == (tmp_path / "out" / "report.md").read_text()
    assert "| held-out loss, message text (nats/token) | — | 3.250 | 3.250 | 2.500 |" in text
    assert "in 1 of 2 rounds (50.0%" in text, "an unanswered round is not counted"
    assert summary["canary"]["models"]["base"]["asked"] == 1 and summary["votes"] == {"fooled": 1, "total": 2}
    assert sorted(files) == ["lengths.png", "messages_per_turn.png", "metrics.png"]
    for name, data in files.items():
        assert bytes(data).startswith(b"\x89PNG") and bytes(data) == (tmp_path / "out" / name).read_bytes()


def test_an_evaluation_without_samples_is_marked_failed_with_the_reason(evaluation):
    done = report(evaluation["url"], "--evaluation", str(evaluation["empty"]))
    assert done.returncode == 1 and "has no samples" in done.stderr
    with psycopg.connect(evaluation["url"]) as connection:
        status, error = connection.execute(
            "SELECT status, error FROM evaluations WHERE id = %s", (evaluation["empty"],)
        ).fetchone()
    assert (status, error) == ("failed", f"report: ValueError: evaluation {evaluation['empty']} has no samples")
