"""A short LoRA run on a real chat learns the owner's way of writing, not just the format.

The dataset comes from the #ubuntu IRC fixture through `twin import` and `twin dataset` (groups
on, loss on the owner). Loss on `>>> `, names and `<|im_end|>` falls within a few steps of any
run, so the test asserts on content tokens — the messages' own text — where only learning helps.
To fit the CI budget on two cores, training uses the owner-densest sessions (the ones where the
owner wrote the largest share), and the held-out set is every held-out session with an owner turn.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import smollm2_gguf
from twin_trainer.config import TrainConfig
from twin_trainer.train import train

ROOT = Path(__file__).resolve().parents[2]
IRC = ROOT.parent / "shared/fixtures/irc/ubuntu_irc_as_telegram_export.json"
TRAIN_EXAMPLES = 64


def owner_share(example: dict) -> float:
    trained = sum(len(s["text"]) for s in example["segments"] if s["train"])
    return trained / max(1, sum(len(s["text"]) for s in example["segments"]))


def twin(*args: str, data: Path) -> None:
    """The real CLI on an embedded PostgreSQL in `data`."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("TWIN_")}
    env |= {"TWIN_DATA_DIR": str(data), "TWIN_TZ": "UTC"}
    done = subprocess.run(["node", str(ROOT / "bin/twin.js"), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"twin {' '.join(args)} failed:\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def irc_dataset():
    # Not pytest's tmp_path: its parents are private to root, and the embedded PostgreSQL runs as
    # another user when tests run as root, so it needs a world-traversable folder.
    work = Path(tempfile.mkdtemp(prefix="twin-learning-"))
    os.chmod(work, 0o755)
    twin("import", str(IRC), data=work / "data")
    full = work / "full"
    twin("dataset", "--groups", "--since", "all", "--max-tokens", "256", "--loss", "owner", "--eval-fraction", "0.1",
         "--out", str(full), data=work / "data")
    dense = work / "dense"
    dense.mkdir()
    examples = [json.loads(line) for line in (full / "train.jsonl").read_text().splitlines()]
    chosen = sorted(examples, key=owner_share, reverse=True)[:TRAIN_EXAMPLES]
    (dense / "train.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in chosen))
    for name in ("eval.jsonl", "manifest.json"):
        (dense / name).write_bytes((full / name).read_bytes())
    yield dense
    shutil.rmtree(work, ignore_errors=True)


def test_a_short_lora_run_beats_the_base_on_the_owners_held_out_content_tokens(irc_dataset, tmp_path, capsys):
    config = TrainConfig(
        base=str(smollm2_gguf()),
        dataset=str(irc_dataset),
        output=str(tmp_path / "run"),
        epochs=1,
        learning_rate=5e-4,
        warmup_ratio=0.1,
        tokens_per_batch=512,
        eval_every=0,
        save_every=0,
    )
    result = train(config, lambda event: None)
    base, tuned = result["metrics"]["base"]["overall"], result["metrics"]["tuned"]["overall"]
    with capsys.disabled():
        print(
            f"\n  IRC, owner's held-out turns ({result['metrics']['eval_examples']} sessions, {result['step']} steps):"
            f"\n    content tokens ({tuned['content_tokens']}): base {base['content_loss']:.4f} → tuned {tuned['content_loss']:.4f}"
            f"\n    all trained tokens ({tuned['tokens']}): base {base['loss']:.4f} → tuned {tuned['loss']:.4f}"
        )
    assert tuned["content_tokens"] == base["content_tokens"] > 500, "the same, sizeable set of content tokens"
    assert tuned["loss"] < base["loss"], f"all trained tokens: tuned {tuned['loss']:.4f} vs base {base['loss']:.4f}"
    assert tuned["content_loss"] < base["content_loss"], (
        f"content tokens: tuned {tuned['content_loss']:.4f} is not below base {base['content_loss']:.4f}"
    )
