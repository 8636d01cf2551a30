"""Classifier two-sample test: how well can a classifier tell real rows from synthetic ones?

Lopez-Paz & Oquab 2017, "Revisiting Classifier Two-Sample Tests". An AUC of 0.5 means the
classifier cannot tell the two sets apart; 1.0 means it always can.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from plugkit.errors import UsageError
from plugkit.metrics._inputs import features, finite, row_keys, same_width

FOLDS = 5
MODELS = ("hgb", "logistic")
LEAF = 20  # HistGradientBoosting's min_samples_leaf, for 200 training rows and more


def leaf_size(rows: int) -> int:
    """min_samples_leaf for a gradient-boosting model fitted on `rows` rows: the default 20, a
    tenth of the rows below 200 (at least 1). With 20, a tree cannot split 32 rows more than
    once, and a 40-row table's classifiers all predict the majority class."""
    return max(1, min(LEAF, rows // 10))


def detection(real: object, fake: object, *, model: str = "hgb", seed: int = 0,
              categorical: np.ndarray | None = None,
              times: tuple[np.ndarray, np.ndarray] | None = None,
              span: int = 0) -> dict[str, float]:
    """Accuracy and ROC AUC of a classifier telling `real` rows from `fake` rows ([N, d] each),
    averaged over 5-fold stratified cross-validation. The larger set is first subsampled to the
    size of the smaller, so that 0.5 is chance for both scores.

    times (real's, fake's; int [N] each) and span: rows that are windows of one series, each
    with the time it starts at and `span` steps long. The folds are then spans of time
    (blocked cross-validation), and a fold's classifier learns from no row closer than `span`
    to the rows it is tested on: overlapping windows share their values (a window's minimum
    is its neighbours'), so with shuffled folds a classifier recognizes a held-out real window
    by the values of its neighbours in training and tells real windows shifted by 0.02 ppm,
    a fifth of co2's recorded precision, 94% of the time (docs/results.md).

    model: "hgb" (HistGradientBoostingClassifier: tables, sequences; NaN allowed) or
    "logistic" (standardized LogisticRegression: image features). categorical: boolean mask of
    the columns holding ordinal category codes (hgb only).
    """
    if model not in MODELS:
        raise UsageError(f"unknown detection model {model!r}; choose one of {', '.join(MODELS)}")
    real = features(real, "real", min_rows=FOLDS)
    fake = features(fake, "fake", min_rows=FOLDS)
    same_width(real, fake, "real and fake")
    if model == "logistic":
        finite(real, "real")
        finite(fake, "fake")
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    if times is None:
        real, fake = _subsample(real, n, rng), _subsample(fake, n, rng)
        folds = PredefinedSplit(_paired_folds(real, fake, rng))
    else:
        (real, real_t), (fake, fake_t) = (_subsample_with(x, t, n, rng)
                                          for x, t in ((real, times[0]), (fake, times[1])))
        folds = _blocked_folds(np.concatenate([real_t, fake_t]), span, n)
    fit_rows = 2 * n * (FOLDS - 1) // FOLDS  # rows each fold's classifier learns from
    scores = cross_validate(_classifier(model, seed, categorical, fit_rows),
                            np.concatenate([real, fake]), np.repeat([1, 0], n),
                            cv=folds, scoring=("accuracy", "roc_auc"))
    return {"accuracy": float(scores["test_accuracy"].mean()),
            "auc": float(scores["test_roc_auc"].mean())}


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) == n else x[rng.choice(len(x), n, replace=False)]


def _subsample_with(x: np.ndarray, t: np.ndarray, n: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(t) != len(x):
        raise UsageError(f"times: {len(t)} for {len(x)} rows")
    rows = np.arange(len(x)) if len(x) == n else rng.choice(len(x), n, replace=False)
    return x[rows], np.asarray(t, np.int64)[rows]


def _blocked_folds(times: np.ndarray, span: int,
                   n_real: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, test rows) of each fold: the test rows one of FOLDS equal spans of
    time; the training rows the others, less those within `span` of the test rows ("purged"
    cross-validation, Lopez de Prado 2018). The first n_real rows are the real ones; a fold
    whose test or training rows miss a class is left out (a generator that draws only one
    period of the series leaves the others without fakes)."""
    low, high = times.min(), times.max() + 1
    fold = (times - low) * FOLDS // (high - low)
    real = np.arange(len(times)) < n_real
    out = []
    for k in range(FOLDS):
        test = fold == k
        if not test.any():
            continue
        near = (times > times[test].min() - span) & (times < times[test].max() + span)
        train = ~test & ~near
        if all(np.unique(real[rows]).size == 2 for rows in (test, train)):
            out.append((np.flatnonzero(train), np.flatnonzero(test)))
    if not out:
        raise UsageError(f"detection: {n_real} windows are too few for folds of time whose "
                         f"training keeps {span} steps from their test windows")
    return out


def _paired_folds(real: np.ndarray, fake: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fold of each row of [real; fake]: stratified, with every fake row that copies a real row
    paired with one such real row in the same fold.

    Why: with a copy in the training folds under the other label, the classifier learns to
    call the held-out row the wrong class, and a generator that copies its training data would
    score below chance instead of at it. Repeated values (discrete data) still spread over all
    folds, one real-fake pair at a time.
    """
    _, key = np.unique(np.concatenate([row_keys(real, "real"), row_keys(fake, "fake")]),
                       return_inverse=True)
    n = len(real)
    # The j-th real and the j-th fake occurrence of one value form a pair: same pair id.
    pair_id = np.concatenate([_occurrence(key[:n]), _occurrence(key[n:])]) + key * (n + 1)
    in_both = np.isin(pair_id, pair_id[:n]) & np.isin(pair_id, pair_id[n:])
    group = np.where(in_both, pair_id, -1 - np.arange(2 * n))  # unpaired: a group of its own
    groups, row_group = np.unique(group, return_inverse=True)
    # Deal the shuffled groups round-robin within each kind (pair, lone real, lone fake), so
    # every fold gets the same mix of labels.
    kind = np.zeros(len(groups), dtype=np.int64)
    kind[row_group] = np.where(in_both, 0, np.repeat([1, 2], n))
    order = rng.permutation(len(groups))
    order = order[np.argsort(kind[order], kind="stable")]
    fold_of_group = np.empty(len(groups), dtype=np.int64)
    fold_of_group[order] = np.arange(len(groups)) % FOLDS
    return fold_of_group[row_group]


def _occurrence(key: np.ndarray) -> np.ndarray:
    """How many earlier entries of `key` hold the same value: 0, 1, 2, ... per value."""
    order = np.argsort(key, kind="stable")
    ranked = key[order]
    out = np.empty(len(key), dtype=np.int64)
    out[order] = np.arange(len(key)) - np.searchsorted(ranked, ranked, side="left")
    return out


def _classifier(model: str, seed: int, categorical: np.ndarray | None,
                rows: int) -> ClassifierMixin:
    if model == "logistic":
        if categorical is not None:
            raise UsageError("categorical columns need model='hgb'")
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed,
                                          min_samples_leaf=leaf_size(rows))
