"""The dataset as `twin dataset --out` writes it, and the labels the model learns from.

An example is a list of segments `{text, train, speaker}`. Joined, they are the text the model
reads; every token that overlaps a trained segment is labelled (learnt), every other token is
masked with -100. The labelled tokens must decode back to exactly the trained text: if a
tokenizer's offsets are off, training would silently learn the wrong thing, so we stop instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .database import read_dataset
from .errors import BaseModelError, DatasetFormatError, LabelError

FORMAT_VERSION = 2
# Version 1 is version 2 without markers: the same segments, read the same way.
READABLE_VERSIONS = (1, 2)
IGNORE_INDEX = -100
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class Segment:
    text: str
    train: bool
    speaker: str | None


@dataclass(frozen=True)
class Example:
    id: str
    chat_id: int
    split: str
    speakers: list[dict[str, Any]]
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)

    @property
    def trained_text(self) -> str:
        return "".join(segment.text for segment in self.segments if segment.train)


@dataclass(frozen=True)
class LabelledExample:
    example_id: str
    input_ids: list[int]
    labels: list[int]
    # Per token: the speaker's name for labelled tokens, None elsewhere (per-speaker loss).
    speakers: list[str | None]
    # Per token: True where it overlaps message text itself — not ">>> ", names or <|im_end|>,
    # which any run learns at once; the honest measure of learning is on these.
    content: list[bool]
    # Characters of trained text, for bits per character.
    trained_characters: int = 0

    @property
    def supervised_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _example_from_json(value: Any, where: str) -> Example:
    try:
        segments = [Segment(str(s["text"]), bool(s["train"]), s.get("speaker")) for s in value["segments"]]
        if not all(isinstance(s["train"], bool) and isinstance(s["text"], str) for s in value["segments"]):
            raise TypeError("segment text must be a string and train a boolean")
        return Example(
            id=str(value["id"]),
            chat_id=int(value["chat_id"]),
            split=str(value["split"]),
            speakers=list(value["speakers"]),
            segments=segments,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetFormatError(f"{where}: not a twin example ({error!r})") from error


def read_examples(path: Path) -> Iterator[Example]:
    """Streams the examples of one JSONL file, naming the file and line of any bad one."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(f"{path}:{number}: invalid JSON ({error.msg})") from error
            yield _example_from_json(value, f"{path}:{number}")


def check_format_version(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    version = manifest.get("formatVersion")
    if version not in READABLE_VERSIONS:
        raise DatasetFormatError(
            f"{where}: format version {version!r}, this trainer reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; "
            "rebuild the dataset with the matching twin version"
        )
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a dataset folder, refused unless its format version is the one we read."""
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DatasetFormatError(f"{path}: missing — point to the folder `twin dataset --out` wrote") from error
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: invalid JSON ({error.msg})") from error
    return check_format_version(manifest, str(path))


@dataclass(frozen=True)
class Dataset:
    manifest: dict[str, Any]
    train: list[Example]
    eval: list[Example]


POSTGRES_PREFIX = "postgres:"


def load_dataset(spec: str, database_url: str | None = None) -> Dataset:
    """A dataset folder (`twin dataset --out`) or `postgres:<id>`, read through `database_url`."""
    if spec.startswith(POSTGRES_PREFIX):
        if not database_url:
            raise DatasetFormatError(f"dataset={spec}: set DATABASE_URL to read a dataset from PostgreSQL")
        raw = spec[len(POSTGRES_PREFIX) :]
        if not raw.isdigit():
            raise DatasetFormatError(f"dataset={spec}: expected postgres:<dataset id>, e.g. postgres:3")
        manifest, rows = read_dataset(database_url, int(raw))
        check_format_version(manifest, f"dataset {raw} in PostgreSQL")
        examples = [_example_from_json(row, f"dataset {raw}, example {row.get('id')}") for row in rows]
        return Dataset(manifest, [e for e in examples if e.split == "train"], [e for e in examples if e.split == "eval"])
    folder = Path(spec)
    if not folder.is_dir():
        raise DatasetFormatError(
            f"dataset={spec}: not a folder; give the folder `twin dataset --out` wrote, or postgres:<id>"
        )
    manifest = read_manifest(folder)
    check_files(folder, manifest)
    return Dataset(manifest, list(read_examples(folder / "train.jsonl")), list(read_examples(folder / "eval.jsonl")))


def check_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Refuses a folder whose data files are not the ones its manifest describes (a truncated or
    mixed folder), naming the file. Manifests from before the checksums are read with a warning."""
    described = manifest.get("files")
    if described is None:
        print(
            f"warning: {folder / 'manifest.json'} has no line counts or checksums (written by an older twin): "
            "its files are not verified; rebuild the dataset to have them checked",
            file=sys.stderr,
        )
        return
    for name in ("train.jsonl", "eval.jsonl"):
        expected = described.get(name)
        if not isinstance(expected, dict):
            raise DatasetFormatError(f"{folder / 'manifest.json'}: names no line count and checksum for {name}")
        path = folder / name
        try:
            found = describe_file(path)
        except FileNotFoundError as error:
            raise DatasetFormatError(f"{path}: missing, though manifest.json describes it") from error
        if found != {"lines": expected.get("lines"), "sha256": expected.get("sha256")}:
            raise DatasetFormatError(
                f"{path}: does not match manifest.json ({found['lines']:,} lines, the manifest says "
                f"{expected.get('lines')}; sha256 {'matches' if found['sha256'] == expected.get('sha256') else 'differs'}): "
                "the folder is incomplete or mixed from two runs — run `twin dataset --out` again"
            )


def describe_file(path: Path) -> dict[str, Any]:
    """A data file's line count and sha256, as the manifest of a dataset folder records them."""
    digest, lines = hashlib.sha256(), 0
    with path.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return {"lines": lines, "sha256": digest.hexdigest()}


def check_chat_tokens(tokenizer: Any) -> tuple[int, int]:
    """The ids of <|im_start|> and <|im_end|>; refuses a base that lacks them as single tokens.

    Adding them would put new embeddings into the adapter, which llama.cpp adapters cannot carry.
    """
    ids = []
    for token in CHAT_TOKENS:
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise BaseModelError(
                f"the base model's tokenizer splits {token} into {len(encoded)} tokens; "
                "use a ChatML base (Qwen2.5/3, SmolLM2, Dolphin) whose vocabulary has it as one token"
            )
        ids.append(encoded[0])
    return ids[0], ids[1]


MESSAGE_PREFIX = ">>> "
IM_END = "<|im_end|>"


def content_spans(body: str, start: int) -> list[tuple[int, int]]:
    """Character spans of the messages' own text inside a trained turn body starting at `start`."""
    text = body[: -len(IM_END)] if body.endswith(IM_END) else body
    spans = []
    position = start
    for line in text.split("\n"):
        skip = len(MESSAGE_PREFIX) if line.startswith(MESSAGE_PREFIX) else 0
        if len(line) > skip:
            spans.append((position + skip, position + len(line)))
        position += len(line) + 1
    return spans


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(start < span_end and end > span_start for span_start, span_end in spans)


def label_example(example: Example, tokenizer: Any) -> LabelledExample:
    """Tokenizes the joined segments and labels every token that overlaps a trained segment."""
    text = example.text
    spans: list[tuple[int, int, str | None]] = []
    content: list[tuple[int, int]] = []
    position = 0
    for segment in example.segments:
        end = position + len(segment.text)
        if segment.train and end > position:
            spans.append((position, end, segment.speaker))
            content.extend(content_spans(segment.text, position))
        position = end

    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    input_ids: list[int] = list(encoded["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in encoded["offset_mapping"]]
    labels = [IGNORE_INDEX] * len(input_ids)
    speakers: list[str | None] = [None] * len(input_ids)
    span_index = 0
    for index, (start, end) in enumerate(offsets):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index < len(spans) and start < spans[span_index][1] and end > spans[span_index][0]:
            labels[index] = input_ids[index]
            speakers[index] = spans[span_index][2]

    learnt = tokenizer.decode([label for label in labels if label != IGNORE_INDEX])
    if learnt != example.trained_text:
        raise LabelError(
            f"example {example.id}: the labelled tokens decode to {learnt[:80]!r}… but the trained text is "
            f"{example.trained_text[:80]!r}…; this tokenizer's offsets do not line up with the text"
        )
    is_content = [labels[i] != IGNORE_INDEX and _overlaps(content, *offsets[i]) for i in range(len(input_ids))]
    return LabelledExample(example.id, input_ids, labels, speakers, is_content, len(example.trained_text))
