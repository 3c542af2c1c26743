"""`compare-memory`: the paired bootstrap and the figures on hand-made cases with known answers, the
refusal of an unfair pair, the probe's tokens, and one end-to-end run on SmolLM2 with two adapters."""

import json
from dataclasses import asdict

import numpy as np
import pytest
from conftest import smollm2_gguf

from twin_trainer.compare_memory import (
    ComparisonError,
    Sums,
    check_same_targets,
    figure,
    pair_examples,
    paired_bootstrap,
    probe_flags,
    verdict,
)
from twin_trainer.data import Example, Segment, label_example


def example(example_id: str, turns: list[tuple[str, list[str], bool]], memory: str | None = None) -> Example:
    """Segments as src/dataset/chatml.ts renders them; `memory`: the untrained memory turn after the header."""
    segments = [Segment("<|im_start|>system\nTelegram chat · Pavel, Olga · 2024-03-02 Sat 18:00<|im_end|>", False, "system")]
    if memory is not None:
        segments += [Segment("\n", False, None), Segment(f"<|im_start|>system\n{memory}<|im_end|>", False, "system")]
    for speaker, messages, train in turns:
        segments.append(Segment("\n", False, None))
        segments.append(Segment(f"<|im_start|>{speaker}\n", False, speaker))
        segments.append(Segment("\n".join(f">>> {m}" for m in messages) + "<|im_end|>", train, speaker))
    return Example(example_id, 2, "eval", [], segments)


TURNS = [("Pavel", ["did barsik finish the antibiotics"], False), ("Olga", ["yes barsik is healthy again"], True)]
MEMORY = "Earlier · Telegram chat · Pavel, Olga · 2024-03-01 Fri 18:00\nPavel: >>> is barsik still sick\nOlga: >>> he goes to the vet tomorrow"


@pytest.mark.unit
def test_every_session_one_half_nat_better_gives_exactly_that_with_a_collapsed_interval():
    tokens = np.array([10.0, 30.0, 5.0, 12.0])
    loss_a = tokens * 2.0
    loss_b = tokens * 1.5
    difference, (low, high) = paired_bootstrap(loss_a, loss_b, tokens, resamples=2000)
    assert difference == pytest.approx(-0.5)
    assert low == pytest.approx(-0.5) and high == pytest.approx(-0.5)


@pytest.mark.unit
def test_the_interval_holds_the_true_difference_and_excludes_zero_only_when_it_should():
    tokens = np.full(40, 20.0)
    noise = np.array([0.05, -0.05] * 20)
    # Better by 0.3 nats per token in every session, give or take 0.05: the interval excludes 0.
    difference, (low, high) = paired_bootstrap(tokens * 2.0, tokens * (1.7 + noise), tokens, resamples=4000)
    assert difference == pytest.approx(-0.3)
    assert low < -0.3 < high < 0
    # Half the sessions better by 0.5, half worse by 0.5: no difference, and the interval says so.
    swing = np.array([0.5, -0.5] * 20)
    difference, (low, high) = paired_bootstrap(tokens * 2.0, tokens * (2.0 + swing), tokens, resamples=4000)
    assert difference == pytest.approx(0.0, abs=1e-12)
    assert low < 0 < high
    assert verdict({"ci95": [-0.4, -0.2]})[0] and not verdict({"ci95": [low, high]})[0]


@pytest.mark.unit
def test_a_figure_averages_the_seeds_per_session_before_the_bootstrap():
    # Two sessions (s1 with two parts), two seeds; every per-token loss worked out by hand.
    a_seed0 = {"c:1:0": Sums(4.0, 2), "c:1:1": Sums(2.0, 2), "c:2:0": Sums(6.0, 4)}
    a_seed1 = {"c:1:0": Sums(6.0, 2), "c:1:1": Sums(4.0, 2), "c:2:0": Sums(10.0, 4)}
    b_seed0 = {"c:1:0": Sums(2.0, 2), "c:1:1": Sums(2.0, 2), "c:2:0": Sums(4.0, 4)}
    b_seed1 = {"c:1:0": Sums(4.0, 2), "c:1:1": Sums(2.0, 2), "c:2:0": Sums(8.0, 4)}
    row = figure([a_seed0, a_seed1], [b_seed0, b_seed1], examples=3, resamples=500)
    # Session means over seeds: a = (8, 8) on (4, 4) tokens, b = (5, 6): a = 2.0, b = 1.375 per token.
    assert row["a"] == pytest.approx(2.0) and row["b"] == pytest.approx(1.375)
    assert row["difference"] == pytest.approx(-0.625)
    assert (row["sessions"], row["tokens"], row["examples"]) == (2, 8, 3)
    assert row["per_seed"] == [{"a": pytest.approx(1.5), "b": pytest.approx(1.0)}, {"a": pytest.approx(2.5), "b": pytest.approx(1.75)}]
    # The resampled session sets give differences between −0.75 (s1 twice) and −0.5 (s2 twice).
    assert -0.75 <= row["ci95"][0] <= row["ci95"][1] <= -0.5


@pytest.mark.unit
def test_arms_whose_trained_tokens_differ_are_refused_naming_the_example(tokenizer):
    plain = label_example(example("c:1:0", TURNS), tokenizer)
    memory = label_example(example("c:1:0", TURNS, MEMORY), tokenizer)
    check_same_targets(plain, memory)  # memory adds context, never a trained token
    other = [TURNS[0], ("Olga", ["btw the spare key code is 123456"], True)]
    with pytest.raises(ComparisonError, match="example c:1:0: the trained tokens differ"):
        check_same_targets(plain, label_example(example("c:1:0", other, MEMORY), tokenizer))
    with pytest.raises(ComparisonError, match="different held-out examples \\(first: c:9:0\\)"):
        pair_examples([example("c:1:0", TURNS), example("c:9:0", TURNS)], [example("c:1:0", TURNS, MEMORY)])


@pytest.mark.unit
def test_probe_tokens_are_the_content_of_the_chosen_trained_segments(tokenizer):
    turns = [*TURNS, ("Pavel", ["great"], False), ("Olga", ["xylophone quartz"], True)]
    for rendered in (example("c:1:0", turns), example("c:1:0", turns, MEMORY)):
        labelled = label_example(rendered, tokenizer)
        chosen = probe_flags(rendered, labelled, {1}, tokenizer)
        picked = [token for token, flag in zip(labelled.input_ids, chosen) if flag]
        assert tokenizer.decode(picked).strip() == "xylophone quartz"
        first = probe_flags(rendered, labelled, {0}, tokenizer)
        assert tokenizer.decode([t for t, f in zip(labelled.input_ids, first) if f]).strip() == "yes barsik is healthy again"
        assert not any(probe_flags(rendered, labelled, set(), tokenizer))


def write_dataset(folder, examples: list[Example]) -> str:
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"formatVersion": 2}))
    (folder / "train.jsonl").write_text("")
    lines = [json.dumps({**asdict(e), "chat_id": e.chat_id, "started_at": "2024-03-02T18:00:00Z"}) for e in examples]
    (folder / "eval.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


def test_compare_memory_end_to_end_on_smollm2(tmp_path, capsys):
    """Fresh LoRA adapters are the base itself (B = 0): the arms then differ only by the memory turn,
    so 'trained with memory' equals 'the base with memory' and 'served' equals 'message text'."""
    from peft import LoraConfig, get_peft_model

    from twin_trainer.__main__ import main
    from twin_trainer.model import load_base

    sessions = [f"2:{1709400000000 + day * 86_400_000}" for day in range(3)]
    plain = [example(f"{s}:0", TURNS) for s in sessions]
    memory = [example(f"{s}:0", TURNS, MEMORY) for s in sessions]
    model, _ = load_base(str(smollm2_gguf()))
    adapters = []
    for name in ("plain", "memory"):
        peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        peft.save_pretrained(tmp_path / name)
        adapters.append(str(tmp_path / name))
        model = peft.unload()
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"examples": {f"{sessions[0]}:0": [0]}}))
    out = tmp_path / "result.json"
    code = main([
        "compare-memory", "--base", str(smollm2_gguf()),
        "--plain-dataset", write_dataset(tmp_path / "plain-set", plain),
        "--memory-dataset", write_dataset(tmp_path / "memory-set", memory),
        "--plain-adapter", adapters[0], "--memory-adapter", adapters[1],
        "--probe", str(probe), "--resamples", "200", "--out", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    figures = result["figures"]
    assert result["seeds"] == 1 and result["examples"] == 3
    assert figures["message_text"]["sessions"] == 3 and figures["probe"]["sessions"] == 1
    for key in ("a", "b", "difference"):
        assert figures["message_text"][key] == pytest.approx(figures["base"][key], abs=1e-4)
        assert figures["served"][key] == pytest.approx(figures["message_text"][key], abs=1e-4)
    assert figures["message_text"]["tokens"] == figures["base"]["tokens"] > 0
    assert figures["probe"]["tokens"] == figures["message_text"]["tokens"] // 3
    assert result["memory_helps"] == (figures["message_text"]["ci95"][1] < 0)


@pytest.mark.unit
def test_the_report_shows_each_figure_with_its_interval_the_verdict_the_plot_and_the_canary():
    from twin_trainer.charts import memory_figure
    from twin_trainer.report_markdown import memory_section

    row = lambda a, b, low, high: {"a": a, "b": b, "difference": b - a, "ci95": [low, high], "sessions": 7, "tokens": 4200, "examples": 74}  # noqa: E731
    comparison = {
        "figures": {"message_text": row(3.1, 3.0, -0.15, -0.05), "served": row(3.2, 3.0, -0.3, -0.1), "base": row(3.9, 3.95, -0.02, 0.12)},
        "seeds": 2, "resamples": 10_000, "examples": 74, "memory_helps": True,
        "verdict": "memory lowers the held-out loss on message text (the 95% interval excludes 0)",
    }  # fmt: skip
    canary = {"chatId": 5550001, "planted": 3, "probes": 20, "promptLeaks": 0, "replyLeaks": 0}
    text = "\n".join(memory_section(comparison, canary))
    assert "| held-out loss on message text: trained and served without → with memory | 3.1000 | 3.0000 | -0.1000 | -0.1500 to -0.0500 | 7 | 4,200 |" in text
    assert "**Memory lowers the held-out loss on message text (the 95% interval excludes 0).**" in text
    assert "![Memory](memory.png)" in text and "turns whose words" not in text  # no probe figure, no row
    assert "chat 5550001, planted 3 times): from other chats with memory on, 20 probes; the secret reached 0 prompts and 0 replies" in text
    assert memory_section(None, None) == []
    assert "## Memory" in "\n".join(memory_section(None, canary))
    assert memory_figure(comparison)[:8] == b"\x89PNG\r\n\x1a\n"
