import pytest
import torch

from twin_trainer.data import Example, Segment, label_example
from twin_trainer.model import load_base
from twin_trainer.forward import supervised_logits
from twin_trainer.packing import group_by_length, pack, pack_greedily, pad, ungrouped
from conftest import smollm2_gguf


def example(n: int) -> Example:
    texts = ["привет, как дела? 🔥", "all good, you?", "норм, работаю", "same here lol", "ok see you 👋"]
    segments = [Segment(f"<|im_start|>Person {n}\n", False, "P"), Segment(f">>> {texts[n % 5]} {n}<|im_end|>", True, "P")]
    return Example(f"e{n}", 1, "train", [], segments)


@pytest.fixture(scope="module", params=["twin_packed", "sdpa", "eager"])
def model_and_tokenizer(request):
    model, tokenizer = load_base(smollm2_gguf(), attn_implementation=request.param)
    model.eval()
    return model, tokenizer


def logits_alone(model, labelled):
    with torch.no_grad():
        return [model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0] for e in labelled]


def packed_and_alone(model, tokenizer):
    """Four examples packed into one row, and each example's logits computed on its own."""
    labelled = [label_example(example(n), tokenizer) for n in range(4)]
    return pack(labelled), logits_alone(model, labelled)


def test_packed_logits_equal_each_example_alone(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    batch, alone = packed_and_alone(model, tokenizer)
    with torch.no_grad():
        packed = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits[0]
    start = 0
    for one in alone:
        torch.testing.assert_close(packed[start : start + len(one)], one, atol=2e-4, rtol=1e-4)
        start += len(one)


def test_the_same_check_catches_attention_across_examples(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    batch, alone = packed_and_alone(model, tokenizer)
    with torch.no_grad():
        # Wrong: no position ids, so one causal mask spans all examples.
        leaky = model(input_ids=batch.input_ids, use_cache=False).logits[0]
    later = leaky[len(alone[0]) : len(alone[0]) + len(alone[1])]
    assert not torch.allclose(later, alone[1], atol=2e-4, rtol=1e-4)


def test_padded_batches_count_their_padding(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    labelled = [label_example(example(n), tokenizer) for n in range(3)]
    batch = pad(labelled, pad_id=0)
    longest = max(len(e.input_ids) for e in labelled)
    assert batch.input_ids.shape == (3, longest)
    assert batch.padding_fraction == pytest.approx(1 - sum(len(e.input_ids) for e in labelled) / (3 * longest))
    rows = pack_greedily(labelled, max_tokens=2 * longest)
    assert sorted(e.example_id for row in rows for e in row) == sorted(e.example_id for e in labelled)
    assert all(sum(len(e.input_ids) for e in row) <= 2 * longest for row in rows)


def test_the_trainer_forward_gives_each_packed_example_its_own_logits(model_and_tokenizer):
    """What training uses: per-example attention (or the block mask) and logits only where learnt."""
    model, tokenizer = model_and_tokenizer
    batch, alone = packed_and_alone(model, tokenizer)
    with torch.no_grad():
        logits, targets, where = supervised_logits(model, batch)
    expected = torch.cat([one for one in alone])  # row position p predicts the token at p + 1
    torch.testing.assert_close(logits, expected[where - 1], atol=2e-4, rtol=1e-4)
    assert torch.equal(targets, batch.input_ids[0, where]), "targets are the learnt tokens"
    starts = {start for start, _ in batch.example_bounds}
    assert not starts & set(where.tolist()), "no example's first token is predicted from the one before"


def test_wrong_example_bounds_are_caught_by_the_same_check(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    if model.config._attn_implementation != "twin_packed":
        pytest.skip("bounds are only read by the trainer's own attention")
    batch, alone = packed_and_alone(model, tokenizer)
    batch.example_bounds = [(0, batch.tokens)]  # wrong: one example spanning the row
    with torch.no_grad():
        logits, _, where = supervised_logits(model, batch)
    expected = torch.cat([one for one in alone])
    assert not torch.allclose(logits, expected[where - 1], atol=2e-4, rtol=1e-4), "leak across examples is visible"


def test_padded_batches_go_through_the_same_forward(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    labelled = [label_example(example(n), tokenizer) for n in range(3)]
    alone = logits_alone(model, labelled)
    batch = pad(labelled, pad_id=0)
    with torch.no_grad():
        logits, _, where = supervised_logits(model, batch)
    length = batch.input_ids.shape[1]
    expected = torch.cat([torch.cat([one, one.new_zeros(length - len(one), one.shape[1])]) for one in alone])
    torch.testing.assert_close(logits, expected[where - 1], atol=2e-4, rtol=1e-4)


@pytest.mark.unit
def test_length_grouping_batches_neighbours_in_length(tokenizer):
    labelled = [label_example(example(n), tokenizer) for n in range(40)]
    rows = group_by_length(labelled, max_tokens=4 * 20, seed=1)
    assert sorted(e.example_id for row in rows for e in row) == sorted(e.example_id for e in labelled)
    assert {len(row) for row in rows[:-1]} == {len(rows[0])}, "a fixed number of examples per batch"
    for row in rows:
        lengths = [len(e.input_ids) for e in row]
        assert lengths == sorted(lengths, reverse=True), "sorted within a megabatch"


@pytest.mark.unit
def test_ungrouped_batches_keep_the_size_but_mix_the_lengths(tokenizer):
    labelled = [label_example(example(n), tokenizer) for n in range(40)]
    grouped = group_by_length(labelled, max_tokens=4 * 20, seed=1)
    mixed = ungrouped(labelled, max_tokens=4 * 20, seed=1)
    assert sorted(e.example_id for row in mixed for e in row) == sorted(e.example_id for e in labelled)
    assert len(mixed[0]) == len(grouped[0]), "the same fixed number of examples per batch"
    padding = lambda rows: sum(pad(row, 0).padding_fraction for row in rows)  # noqa: E731
    assert padding(mixed) > padding(grouped), "without grouping, batches pad more"
