import json

import pytest

from conftest import smollm2_gguf
from twin_trainer.config import TrainConfig, load_config
from twin_trainer.train import train


def write_dataset(folder, n_train=6, n_eval=2):
    folder.mkdir()

    def example(i, split):
        segments = [
            {"text": "<|im_start|>Friend\n", "train": False, "speaker": "Friend"},
            {"text": f">>> how is it going {i}?<|im_end|>", "train": False, "speaker": "Friend"},
            {"text": "\n", "train": False},
            {"text": "<|im_start|>Me\n", "train": False, "speaker": "Me"},
            {"text": f">>> all good, working on part {i} 🔧<|im_end|>", "train": True, "speaker": "Me"},
        ]
        return {"id": f"{split}{i}", "chat_id": 2, "started_at": "2024-01-01T00:00:00Z", "split": split,
                "speakers": [{"id": 1, "name": "Me"}, {"id": 2, "name": "Friend"}], "segments": segments}

    (folder / "manifest.json").write_text(json.dumps({"formatVersion": 1, "datasetId": 7}))
    (folder / "train.jsonl").write_text("".join(json.dumps(example(i, "train")) + "\n" for i in range(n_train)))
    (folder / "eval.jsonl").write_text("".join(json.dumps(example(i + 100, "eval")) + "\n" for i in range(n_eval)))


def test_stop_saves_a_checkpoint_and_a_rerun_resumes_the_step_count(tmp_path):
    write_dataset(tmp_path / "data")
    config = TrainConfig(base=str(smollm2_gguf()), dataset=str(tmp_path / "data"), output=str(tmp_path / "run"),
                         max_steps=4, tokens_per_batch=64, eval_every=0, save_every=0, learning_rate=1e-3)
    events = []

    def stop_after_two(event):
        events.append(event)
        if event.get("event") == "log" and event["step"] == 2:
            (tmp_path / "run" / "STOP").write_text("")

    first = train(config, stop_after_two)
    assert first == {"stopped": True, "step": 2}
    assert [e["step"] for e in events if e["event"] == "log"] == [1, 2]
    assert (tmp_path / "run" / "checkpoint-2" / "trainer_state.pt").exists()

    (tmp_path / "run" / "STOP").unlink()
    resumed = []
    second = train(config, resumed.append)
    # Phase events (loading, tokenizing) come first; the run's start says where it resumed.
    start = next(e for e in resumed if e["event"] == "start")
    assert start["resumed_from"] == 2
    assert [e["step"] for e in resumed if e["event"] == "log"] == [3, 4]
    assert second["step"] == 4
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) == {"base", "tuned", "eval_examples", "steps", "trained_tokens"} and metrics["steps"] == 4
    assert metrics["trained_tokens"] > 0  # the 4 steps' rows, the 2 before the stop included
    assert metrics["tuned"]["overall"]["tokens"] == metrics["base"]["overall"]["tokens"] > 0
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()


@pytest.mark.unit
def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert configs, "configs/ ships at least one config"
    for path in configs:
        config = load_config(str(path), ["max_steps=3"])
        assert config.max_steps == 3 and config.lora_r > 0


@pytest.mark.unit
def test_a_trained_token_budget_gives_runs_with_different_rows_the_same_learnt_tokens():
    from types import SimpleNamespace

    from twin_trainer.config import ConfigError
    from twin_trainer.train import steps_for_tokens

    example = lambda tokens: SimpleNamespace(supervised_tokens=tokens)  # noqa: E731
    # The same 12 learnt tokens, packed two ways: small rows (no memory) and big ones (memory).
    small = [[example(2)], [example(2)], [example(2)], [example(2)], [example(2)], [example(2)]]
    big = [[example(2), example(2), example(2)], [example(2), example(2), example(2)]]
    assert steps_for_tokens(small, 1, 8) == 4 and steps_for_tokens(big, 1, 8) == 2
    assert steps_for_tokens(big, 2, 8) == 1  # two processes: a step takes two rows
    assert steps_for_tokens(small, 1, 20) == 10  # past one pass it cycles through the order again
    with pytest.raises(ValueError, match="no trained token"):
        steps_for_tokens([[example(0)]], 1, 5)
    with pytest.raises(ConfigError, match="choose one"):
        TrainConfig(max_trained_tokens=100, max_steps=5).check()
