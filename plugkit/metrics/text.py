"""Synthetic text against real text: lists of strings (names, lines, short documents)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from plugkit.errors import UsageError
from plugkit.metrics._inputs import strings
from plugkit.metrics.univariate import ks_statistic, total_variation

UNITS = ("char", "word")


def novelty(samples: object, train: object, holdout: object) -> dict[str, float]:
    """Where the samples come from, as shares of all samples (the first three sum to 1):

    copied        equal to a training item: memorized
    holdout_only  equal to a held-out real item but no training item: real, and not copied
    new           in neither
    unique        distinct samples / samples: 1 = no repeats, low = mode collapse
    """
    samples = pd.Series(strings(samples, "samples"), dtype=object)
    in_train = samples.isin(strings(train, "train")).to_numpy()
    in_holdout = samples.isin(strings(holdout, "holdout")).to_numpy()
    copied, holdout_only = in_train.mean(), (in_holdout & ~in_train).mean()
    return {"copied": float(copied), "holdout_only": float(holdout_only),
            "new": float(1 - copied - holdout_only),
            "unique": float(samples.nunique() / len(samples))}


def distinct_n(samples: object, n: int = 2, *, unit: str = "char") -> float:
    """Distinct n-grams / all n-grams over the samples (Li et al. 2016, "A Diversity-Promoting
    Objective Function for Neural Conversation Models"), n-grams of characters or of
    whitespace-separated words, never across two samples. In (0, 1]; higher = more diverse;
    nan when no sample holds n units."""
    if n < 1:
        raise UsageError(f"distinct_n needs n >= 1; got {n}")
    if unit not in UNITS:
        raise UsageError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    samples = strings(samples, "samples")
    ids, owner = _characters(samples) if unit == "char" else _words(samples)
    if len(ids) < n:
        return float("nan")
    grams = sliding_window_view(ids, n)[owner[: len(ids) - n + 1] == owner[n - 1:]]
    if len(grams) == 0:
        return float("nan")
    return float(len(np.unique(grams, axis=0)) / len(grams))


def char_distance(samples: object, reference: object) -> float:
    """Total variation distance between the character frequencies of two lists of strings.
    In [0, 1]; 0 = every character equally frequent in both."""
    chars = _characters(strings(samples, "samples"))[0]
    ref_chars = _characters(strings(reference, "reference"))[0]
    if chars.size == 0 or ref_chars.size == 0:
        raise UsageError("char_distance needs at least one character on each side")
    return total_variation(chars, ref_chars)


def length_distance(samples: object, reference: object) -> dict[str, float]:
    """How differently long the strings are, in characters: {"ks": KS statistic, "tv": total
    variation distance between the length histograms}. Both in [0, 1]; 0 = same lengths."""
    lengths = _lengths(strings(samples, "samples"))
    ref_lengths = _lengths(strings(reference, "reference"))
    return {"ks": ks_statistic(lengths, ref_lengths), "tv": total_variation(lengths, ref_lengths)}


def _lengths(items: list[str]) -> np.ndarray:
    return np.fromiter(map(len, items), dtype=np.int64, count=len(items))


def _characters(items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code point of every character of every item, and the item it belongs to."""
    # One encode of the joined text instead of a Python loop over characters.
    codes = np.frombuffer("".join(items).encode("utf-32-le"), dtype=np.uint32)
    return codes, np.repeat(np.arange(len(items)), _lengths(items))


def _words(items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """An id per whitespace-separated word (same word, same id), and the item it belongs to."""
    words = pd.Series(items, dtype=object).str.split().explode().dropna()
    return pd.factorize(words)[0], words.index.to_numpy()
