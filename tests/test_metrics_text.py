"""Known answers for the text measures, worked out by hand on small lists of strings."""

import numpy as np
import pandas as pd
import pytest

from plugkit.errors import UsageError
from plugkit.metrics.distances import exact_copy_rate
from plugkit.metrics.text import char_distance, distinct_n, length_distance, novelty


def test_novelty_shares_on_a_constructed_example():
    train, holdout = ["anna", "carl", "bo"], ["bo", "dina", "eve"]
    samples = ["anna", "anna", "bo", "dina", "eve", "zed", "zoe", "anna "]
    # copied: anna x2, bo (in both: train wins) = 3/8; holdout only: dina, eve = 2/8;
    # new: zed, zoe, "anna " (the trailing space makes it another string) = 3/8.
    assert novelty(samples, train, holdout) == pytest.approx(
        {"copied": 3 / 8, "holdout_only": 2 / 8, "new": 3 / 8, "unique": 7 / 8})
    assert exact_copy_rate(samples, train) == 3 / 8
    assert novelty(pd.Series(samples), tuple(train), iter(holdout)) == novelty(samples, train,
                                                                              holdout)


def test_novelty_of_the_training_data_itself_is_all_copied():
    train = ["ada", "bea", "cy"]
    assert novelty(train, train, ["dee"]) == {"copied": 1.0, "holdout_only": 0.0, "new": 0.0,
                                              "unique": 1.0}


def test_distinct_n_of_characters():
    samples = ["abab", "ab", "", "the cat sat", "the cat"]
    # 24 characters, 8 distinct: a b t h e c s and the space.
    assert distinct_n(samples, 1) == pytest.approx(8 / 24)
    # 20 bigrams (3 + 1 + 0 + 10 + 6) inside the samples; distinct: ab ba, and th he "e "
    # " c" ca at "t " " s" sa from the cat sentences = 11.
    assert distinct_n(samples, 2) == pytest.approx(11 / 20)


def test_distinct_n_of_words_never_spans_two_samples():
    samples = ["the cat sat", "the cat", "sat the"]
    # Unigrams 7, distinct 3. Bigrams: (the cat) (cat sat) | (the cat) | (sat the) = 4, 3 distinct;
    # "sat" + "the" across the first two samples is not a bigram.
    assert distinct_n(samples, 1, unit="word") == pytest.approx(3 / 7)
    assert distinct_n(samples, 2, unit="word") == pytest.approx(3 / 4)
    assert distinct_n(samples, 3, unit="word") == 1.0
    assert np.isnan(distinct_n(samples, 4, unit="word"))


def test_distinct_n_tells_repetitive_from_varied_text():
    repetitive = ["aaaa"] * 50
    varied = ["".join(np.random.default_rng(i).choice(list("abcdefgh"), 8)) for i in range(50)]
    assert distinct_n(repetitive, 3) == pytest.approx(1 / 100)
    assert distinct_n(varied, 3) > 0.5


def test_char_distance():
    assert char_distance(["ab", "c"], ["cab"]) == 0.0
    assert char_distance(["aa"], ["ab"]) == 0.5  # a: 1 vs 1/2, b: 0 vs 1/2
    assert char_distance(["xy"], ["éz"]) == 1.0  # beyond ASCII too


def test_length_distance():
    # Lengths 1, 2, 3 against 2, 4. KS: the CDFs are 1 vs 1/2 at 3. TV: (1/3 + 1/6 + 1/3 + 1/2) / 2.
    assert length_distance(["a", "bb", "ccc"], ["aa", "bbbb"]) == pytest.approx(
        {"ks": 0.5, "tv": 2 / 3})
    assert length_distance(["ab", "c"], ["d", "ef"]) == {"ks": 0.0, "tv": 0.0}


@pytest.mark.parametrize(("call", "message"), [
    (lambda: novelty("anna", ["anna"], ["bo"]), "samples must be a list of strings; got str"),
    (lambda: novelty(["anna"], [], ["bo"]), "train is empty"),
    (lambda: novelty(["anna", 3], ["anna"], ["bo"]), "must contain only strings"),
    (lambda: distinct_n(["ab"], 0), "n >= 1"),
    (lambda: distinct_n(["ab"], 2, unit="byte"), "unknown unit 'byte'"),
    (lambda: char_distance([""], ["ab"]), "at least one character"),
    (lambda: length_distance(None, ["ab"]), "list of strings; got NoneType"),
])
def test_bad_inputs_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call()
