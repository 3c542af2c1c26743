"""The dataset's errors, apart from the code that raises them: data.py raises them reading files and
labelling, database.py reading a dataset stored in PostgreSQL. Kept here so that database.py needs
nothing of data.py, and data.py reaches the database one way only."""

from __future__ import annotations


class DatasetFormatError(ValueError):
    """The dataset files are not what `twin dataset` writes; the message says which file and line."""


class LabelError(ValueError):
    """Labelling an example went wrong: the tokenizer's offsets do not match the text."""


class BaseModelError(ValueError):
    """The base model cannot be trained on this format (e.g. ChatML tokens are not single tokens)."""
