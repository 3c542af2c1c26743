import json

import pytest

from twin_trainer.data import (
    IGNORE_INDEX,
    BaseModelError,
    DatasetFormatError,
    Example,
    LabelError,
    Segment,
    check_chat_tokens,
    label_example,
    read_examples,
    read_manifest,
)

pytestmark = pytest.mark.unit  # pure: no database, no model; `npm run test:unit` runs it


def turns(*items: tuple[str, list[str], bool], header: str | None = None) -> Example:
    """Segments exactly as the TypeScript renderer makes them (src/dataset/chatml.ts)."""
    segments: list[Segment] = []
    if header is not None:
        segments.append(Segment(f"<|im_start|>system\n{header}<|im_end|>", False, "system"))
    for speaker, messages, train in items:
        if segments:
            segments.append(Segment("\n", False, None))
        segments.append(Segment(f"<|im_start|>{speaker}\n", False, speaker))
        body = "\n".join(f">>> {m}" for m in messages) + "<|im_end|>"
        segments.append(Segment(body, train, speaker))
    return Example("e1", 42, "train", [], segments)


def test_labels_cover_exactly_the_trained_text_in_cyrillic_emoji_and_long_names(tokenizer):
    long_name = "Александр Константинович Смирнов-Щербаков 🦊"
    example = turns(
        ("Джон", ["привет 👋", "как дела? 🔥🔥"], False),
        (long_name, ["норм 😅", "а у тебя?"], True),
        ("Джон", ["тоже 🙈"], False),
        header="Telegram chat · Джон, Александр · 2023-11-27 Mon 21:15",
    )
    labelled = label_example(example, tokenizer)
    learnt = [label for label in labelled.labels if label != IGNORE_INDEX]
    assert tokenizer.decode(learnt) == ">>> норм 😅\n>>> а у тебя?<|im_end|>"
    assert {s for s in labelled.speakers if s is not None} == {long_name}
    assert labelled.supervised_tokens == len(learnt)
    assert labelled.input_ids == tokenizer(example.text, add_special_tokens=False)["input_ids"]
    content = [t for t, c in zip(labelled.input_ids, labelled.content) if c]
    assert tokenizer.decode(content).replace(" ", "") == "норм😅аутебя?"
    # The role header and the name are context, never learnt.
    start = labelled.input_ids.index(check_chat_tokens(tokenizer)[0])
    assert labelled.labels[start] == IGNORE_INDEX


def marked_turn(speaker: str, lines: list[tuple[str, bool]]) -> list[Segment]:
    """A trained turn whose context lines (markers) split its body, as chatml.ts `bodySegments` does."""
    segments = [Segment(f"<|im_start|>{speaker}\n", False, speaker)]
    for index, (line, trained) in enumerate(lines):
        text = f">>> {line}" + ("<|im_end|>" if index == len(lines) - 1 else "\n")
        if segments[-1].train == trained and len(segments) > 1:
            segments[-1] = Segment(segments[-1].text + text, trained, speaker)
        else:
            segments.append(Segment(text, trained, speaker))
    return segments


@pytest.mark.parametrize(
    "lines",
    [
        # A forward: its marker and its text are context, the owner's own words after it are learnt.
        [("[forwarded from Рейтер]", False), ("Breaking: markets fell 3%!", False), ("wow, seen this?", True)],
        [("[forwarded from someone]", False), ("🤣🤣", False)],
        # A reply marker right before the replying message, after a message of the same turn.
        [("ok!", True), ('[reply to Анна: "а ты придёшь завтра на встречу в 7?…"]', False), ("да 👍", True)],
        # A poll the sender wrote is their words.
        [("[poll] Where do we eat? — Pizza / Sushi / «Тануки»", True)],
        # A message cut to fit, then the truncation line.
        [("a very long message that goes on and", True), ("… [truncated]", False)],
    ],
    ids=["forward", "forward-unknown", "reply", "poll", "truncated"],
)
def test_labels_decode_to_the_trained_text_around_each_marker(tokenizer, lines):
    segments = [Segment("<|im_start|>system\nTelegram chat · A, B<|im_end|>", False, "system"), Segment("\n", False, None)]
    segments += [Segment("<|im_start|>Анна\n", False, "Анна"), Segment(">>> привет?<|im_end|>", False, "Анна")]
    segments += [Segment("\n", False, None), *marked_turn("Me", lines)]
    example = Example("e1", 42, "train", [], segments)
    labelled = label_example(example, tokenizer)  # raises LabelError when a token straddles a boundary
    learnt = tokenizer.decode([x for x in labelled.labels if x != IGNORE_INDEX])
    assert learnt == example.trained_text
    for line, trained in lines:
        assert (line in learnt) == trained, f"{line!r} is {'learnt' if trained else 'context'}"


def test_every_speaker_is_labelled_under_the_all_policy(tokenizer):
    example = turns(("A", ["hi"], True), ("B", ["yo", "sup"], True))
    labelled = label_example(example, tokenizer)
    assert tokenizer.decode([x for x in labelled.labels if x != IGNORE_INDEX]) == example.trained_text
    learnt_by = [s for s in labelled.speakers if s is not None]
    assert set(learnt_by) == {"A", "B"}
    assert learnt_by == sorted(learnt_by), "A's tokens, then B's, in order"


class ShiftedOffsets:
    """A tokenizer whose offsets are off by one character: labelling must notice, not learn noise."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, text, **kwargs):
        encoded = self.inner(text, **kwargs)
        if "offset_mapping" in encoded:
            encoded["offset_mapping"] = [(s + 1, e + 1) for s, e in encoded["offset_mapping"]]
        return encoded

    def decode(self, ids):
        return self.inner.decode(ids)


def test_broken_offsets_stop_labelling(tokenizer):
    example = turns(("A", ["one two three"], False), ("B", ["four five"], True))
    with pytest.raises(LabelError, match="offsets do not line up"):
        label_example(example, ShiftedOffsets(tokenizer))


def test_a_base_without_chatml_tokens_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<": 1, "|": 2, "im_start": 3, "im_end": 4, ">": 5}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Split("|", "isolated")
    plain = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(BaseModelError, match="splits <\\|im_start\\|>"):
        check_chat_tokens(plain)


def test_smollm2_has_both_chat_tokens(tokenizer):
    start, end = check_chat_tokens(tokenizer)
    assert start != end


def test_dataset_files_are_validated_with_file_and_line(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"formatVersion": 99}))
    with pytest.raises(DatasetFormatError, match="format version 99"):
        read_manifest(tmp_path)
    with pytest.raises(DatasetFormatError, match="missing"):
        read_manifest(tmp_path / "nowhere")
    good = {"id": "x", "chat_id": 1, "started_at": "2024-01-01T00:00:00Z", "split": "train", "speakers": [],
            "segments": [{"text": "<|im_start|>A\n", "train": False, "speaker": "A"}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(good) + "\n" + "{not json\n")
    examples = read_examples(path)
    assert next(examples).id == "x"
    with pytest.raises(DatasetFormatError, match=r"train\.jsonl:2: invalid JSON"):
        next(examples)
    path.write_text(json.dumps({**good, "segments": [{"text": "x", "train": "yes"}]}) + "\n")
    with pytest.raises(DatasetFormatError, match=r"train\.jsonl:1: not a twin example"):
        list(read_examples(path))


def test_a_folder_whose_files_disagree_with_its_manifest_is_refused_naming_the_file(tmp_path, capsys):
    from twin_trainer.data import describe_file, load_dataset

    good = {"id": "x", "chat_id": 1, "started_at": "2024-01-01T00:00:00Z", "split": "train", "speakers": [],
            "segments": [{"text": "<|im_start|>A\n", "train": False, "speaker": "A"}]}
    rows = "".join(json.dumps({**good, "id": f"x{i}"}) + "\n" for i in range(10))
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "eval.jsonl").write_text("")
    files = {name: describe_file(tmp_path / name) for name in ("train.jsonl", "eval.jsonl")}
    (tmp_path / "manifest.json").write_text(json.dumps({"formatVersion": 1, "files": files}))
    assert len(load_dataset(str(tmp_path)).train) == 10

    (tmp_path / "train.jsonl").write_text(rows[: rows.index("x7") - 10])  # killed midway: truncated
    with pytest.raises(DatasetFormatError, match=r"train\.jsonl: does not match manifest\.json \(6 lines, the manifest says 10"):
        load_dataset(str(tmp_path))
    (tmp_path / "train.jsonl").write_text(rows.replace("x3", "y3"))  # same length, other content
    with pytest.raises(DatasetFormatError, match=r"train\.jsonl: .*sha256 differs"):
        load_dataset(str(tmp_path))
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "eval.jsonl").unlink()
    with pytest.raises(DatasetFormatError, match=r"eval\.jsonl: missing"):
        load_dataset(str(tmp_path))

    (tmp_path / "eval.jsonl").write_text("")
    (tmp_path / "manifest.json").write_text(json.dumps({"formatVersion": 1}))  # from before the checksums
    capsys.readouterr()
    assert len(load_dataset(str(tmp_path)).train) == 10
    assert "no line counts or checksums" in capsys.readouterr().err
