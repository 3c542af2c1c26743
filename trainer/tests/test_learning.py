"""A short run on a real chat (LoRA, and full fine-tuning) learns the owner's way of writing, not just the format.

The dataset comes from the #ubuntu IRC fixture through `twin import` and `twin dataset` (groups
on, loss on the owner). Loss on `>>> `, names and `<|im_end|>` falls within a few steps of any
run, so the test asserts on content tokens — the messages' own text — where only learning helps.
To fit the CI budget on two cores, training uses the owner-densest sessions (the ones where the
owner wrote the largest share), and the held-out set is every held-out session with an owner turn
(the `irc_dataset` fixture in conftest.py).
"""

import pytest

from conftest import smollm2_gguf
from twin_trainer.config import TrainConfig
from twin_trainer.train import train


# Full fine-tuning moves every weight: a rate far below LoRA's (its one process is FSDP2 over a world of one).
@pytest.mark.parametrize(("method", "learning_rate"), [("lora", 5e-4), ("full", 3e-5)])
def test_a_short_run_beats_the_base_on_the_owners_held_out_content_tokens(
    irc_dataset, tmp_path, capsys, method, learning_rate
):
    config = TrainConfig(
        base=str(smollm2_gguf()),
        dataset=str(irc_dataset),
        output=str(tmp_path / "run"),
        method=method,
        epochs=1,
        learning_rate=learning_rate,
        warmup_ratio=0.1,
        tokens_per_batch=512,
        eval_every=0,
        save_every=0,
    )
    result = train(config, lambda event: None)
    base, tuned = result["metrics"]["base"]["overall"], result["metrics"]["tuned"]["overall"]
    with capsys.disabled():
        print(
            f"\n  {method}, IRC, owner's held-out turns ({result['metrics']['eval_examples']} sessions, {result['step']} steps):"
            f"\n    content tokens ({tuned['content_tokens']}): base {base['content_loss']:.4f} → tuned {tuned['content_loss']:.4f}"
            f"\n    all trained tokens ({tuned['tokens']}): base {base['loss']:.4f} → tuned {tuned['loss']:.4f}"
        )
    assert tuned["content_tokens"] == base["content_tokens"] > 500, "the same, sizeable set of content tokens"
    assert tuned["loss"] < base["loss"], f"all trained tokens: tuned {tuned['loss']:.4f} vs base {base['loss']:.4f}"
    assert tuned["content_loss"] < base["content_loss"], (
        f"content tokens: tuned {tuned['content_loss']:.4f} is not below base {base['content_loss']:.4f}"
    )
