"""How someone writes, measured: the style metrics `twin eval` compares between real and generated turns.

A turn is the list of messages one person sent in a row (the dataset's `>>> ` lines). Every metric
is a plain function of turns, so each can be checked on hand-made inputs with known answers.
Statistics come from scipy, the discriminator from scikit-learn, emoji from the `emoji` package.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import emoji
import numpy as np

Turn = list[str]

CYRILLIC = re.compile(r"[\u0400-\u04FF]")
LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]")
WORD = re.compile(r"\w+", re.UNICODE)


def _share(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def is_sticker(message: str) -> bool:
    """A sticker reaches the dataset as its emoji alone (or `[sticker]` when it has none)."""
    text = message.strip()
    return text == "[sticker]" or (text != "" and emoji.purely_emoji(text) and emoji.emoji_count(text) == 1)


def words(message: str) -> list[str]:
    return WORD.findall(message.lower())


def first_letter(message: str) -> str | None:
    return next((c for c in message if c.isalpha()), None)


def ends_with_period(message: str) -> bool:
    text = message.rstrip()
    return text.endswith(".") and not text.endswith("..")


def distinct(turns: list[Turn], n: int) -> float:
    """Distinct-n: unique word n-grams over all n-grams (repetition lowers it)."""
    grams: Counter[tuple[str, ...]] = Counter()
    for turn in turns:
        for message in turn:
            tokens = words(message)
            grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return _share(len(grams), sum(grams.values()))


def style_metrics(turns: list[Turn]) -> dict[str, float]:
    """The style of a set of turns: rates are shares of messages unless named otherwise."""
    messages = [m for turn in turns for m in turn]
    letters = [first_letter(m) for m in messages]
    lettered = [c for c in letters if c is not None]
    cyrillic = sum(len(CYRILLIC.findall(m)) for m in messages)
    latin = sum(len(LATIN.findall(m)) for m in messages)
    return {
        "turns": len(turns),
        "messages": len(messages),
        "messages_per_turn": _share(len(messages), len(turns)),
        "characters_per_message": _share(sum(len(m) for m in messages), len(messages)),
        "words_per_message": _share(sum(len(words(m)) for m in messages), len(messages)),
        "question_rate": _share(sum("?" in m for m in messages), len(messages)),
        "emoji_rate": _share(sum(emoji.emoji_count(m) > 0 for m in messages), len(messages)),
        "sticker_rate": _share(sum(is_sticker(m) for m in messages), len(messages)),
        "cyrillic_share": _share(cyrillic, cyrillic + latin),
        "lowercase_first_rate": _share(sum(c.islower() for c in lettered), len(lettered)),
        "trailing_period_rate": _share(sum(ends_with_period(m) for m in messages), len(messages)),
        "distinct_1": distinct(turns, 1),
        "distinct_2": distinct(turns, 2),
    }


def turn_lengths(turns: list[Turn]) -> list[int]:
    """Characters per turn (messages joined), the reply length the distance compares."""
    return [sum(len(m) for m in turn) for turn in turns]


def length_distance(real: list[Turn], generated: list[Turn]) -> float:
    """Wasserstein-1 distance between reply-length distributions, in characters (0: the same)."""
    from scipy.stats import wasserstein_distance

    if not real or not generated:
        return float("nan")
    return float(wasserstein_distance(turn_lengths(real), turn_lengths(generated)))


def discriminator_auc(real: list[str], generated: list[str], *, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """How well a character n-gram classifier tells real from generated text: cross-validated ROC AUC.

    0.5 means indistinguishable, 1.0 always told apart. TF-IDF over character 1–4-grams (within
    word boundaries) and logistic regression; stratified folds with a fixed seed.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    texts = list(real) + list(generated)
    labels = np.array([1] * len(real) + [0] * len(generated))
    folds = min(folds, len(real), len(generated))
    if folds < 2:
        return {"auc": float("nan"), "std": float("nan"), "folds": folds}
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=1, sublinear_tf=True),
        LogisticRegression(max_iter=2000, C=1.0),
    )
    scores = cross_val_score(
        model, texts, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="roc_auc"
    )
    return {"auc": float(scores.mean()), "std": float(scores.std()), "folds": folds}


def turn_text(turn: Turn) -> str:
    return "\n".join(turn)
