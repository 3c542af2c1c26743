"""The style metrics of `twin eval` on hand-made turns with known answers."""

import math
import random

import pytest

from twin_trainer.style import discriminator_auc, distinct, is_sticker, length_distance, style_metrics

pytestmark = pytest.mark.unit  # pure: no database, no model; `npm run test:unit` runs it


def test_each_metric_on_turns_with_known_answers():
    turns = [
        ["привет", "как дела?"],  # Cyrillic, one question
        ["Fine.", "👍"],  # a trailing period; a sticker (an emoji alone)
        ["ok ok ok", "see you soon 😀"],  # repetition; an emoji inside text
    ]
    m = style_metrics(turns)
    assert m["turns"] == 3 and m["messages"] == 6
    assert m["messages_per_turn"] == 2
    assert m["characters_per_message"] == pytest.approx((6 + 9 + 5 + 1 + 8 + 14) / 6)
    assert m["words_per_message"] == pytest.approx((1 + 2 + 1 + 0 + 3 + 3) / 6)
    assert m["question_rate"] == pytest.approx(1 / 6)
    assert m["emoji_rate"] == pytest.approx(2 / 6)
    assert m["sticker_rate"] == pytest.approx(1 / 6)
    cyrillic, latin = 6 + 7, 4 + 6 + 10
    assert m["cyrillic_share"] == pytest.approx(cyrillic / (cyrillic + latin))
    # First letters: п к F o s (the sticker has none): four of five lowercase.
    assert m["lowercase_first_rate"] == pytest.approx(4 / 5)
    assert m["trailing_period_rate"] == pytest.approx(1 / 6)
    # Words: привет | как дела | fine | ok ok ok | see you soon → 10 words, 8 distinct.
    assert m["distinct_1"] == pytest.approx(8 / 10)
    # Bigrams: как-дела, ok-ok, ok-ok, see-you, you-soon → 5, 4 distinct.
    assert m["distinct_2"] == pytest.approx(4 / 5)


def test_edge_cases_are_not_numbers_rather_than_zero():
    assert math.isnan(style_metrics([])["messages_per_turn"])
    assert math.isnan(distinct([["hi"]], 2)), "no bigram at all"
    assert is_sticker("[sticker]") and is_sticker(" 😂 ") and not is_sticker("😂😂") and not is_sticker("ok 😂")
    assert not style_metrics([["Ellipsis..."]])["trailing_period_rate"], "an ellipsis is not a full stop"


def test_length_distance_is_the_shift_between_reply_lengths():
    real = [["a" * n] for n in (10, 20, 30)]
    assert length_distance(real, real) == 0
    assert length_distance(real, [["a" * (n + 5)] for n in (10, 20, 30)]) == pytest.approx(5)
    assert math.isnan(length_distance(real, []))


def real_lines(count, seed):
    """Chat-like lines drawn from one vocabulary: two draws are samples of the same 'person'."""
    rng = random.Random(seed)
    vocabulary = "ok yeah sure lol no idea the usual place tonight pizza at 8 running late see you soon".split()
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 7))) for _ in range(count)]


def test_the_discriminator_cannot_tell_two_samples_of_the_same_text_apart():
    result = discriminator_auc(real_lines(200, 1), real_lines(200, 2), seed=0)
    assert 0.4 < result["auc"] < 0.6, result
    assert result["folds"] == 5


def test_the_discriminator_tells_real_from_clearly_different_text():
    rng = random.Random(3)
    formal = [
        f"Dear colleague, I hereby confirm receipt of document No. {rng.randint(100, 999)}. Kind regards."
        for _ in range(200)
    ]
    assert discriminator_auc(real_lines(200, 1), formal, seed=0)["auc"] > 0.95
