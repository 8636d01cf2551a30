"""Within-class diversity: do a conditional model's samples of one class vary as much as real
records of that class do?

A conditional generator can draw every class well and still draw nearly the same image for
every sample of a class (issue 14: the demo's rows of eight near-identical digits). Measures of
the whole set (recall, coverage) fall for that as for any missed region, and say neither which
class nor how far. So per class: the mean pairwise distance between samples of the class, over
the same between real records of the class, both in one feature space. 1 = as varied as real data;
0 = one record per class; above 1 = more spread than real (noise, or mixed-up classes).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

from plugkit.errors import UsageError
from plugkit.metrics._inputs import features, finite

MOST = 500  # records a class and side: 124,750 pairs, milliseconds; more moves the mean little


def mean_pairwise_distance(x: object) -> float:
    """Mean Euclidean distance over the n (n - 1) / 2 distinct pairs of rows of x [n >= 2, d]:
    an unbiased estimate of the mean distance of two independent draws at any n, so sets of
    different sizes compare."""
    arr = finite(features(x, "x", min_rows=2), "x")
    return float(pdist(arr).mean())


def class_ratios(reference: object, reference_labels: object, other: object,
                 other_labels: object, classes: int, *, most: int = MOST,
                 seed: int = 0) -> list[float | None]:
    """For each class 0..classes-1: the mean pairwise distance of the `other` rows of that
    class over that of the `reference` rows of that class, each side cut to `most` rows a class
    (a seeded random subset). None for a class with fewer than 2 rows on a side, or whose
    reference rows are all equal (nothing to compare with)."""
    if classes < 1 or most < 2:
        raise UsageError(f"class_ratios needs classes >= 1 and most >= 2; got {classes}, {most}")
    a, b = features(reference, "reference"), features(other, "other")
    ya, yb = _labels(reference_labels, len(a), "reference"), _labels(other_labels, len(b), "other")
    out: list[float | None] = []
    for k in range(classes):
        rng = np.random.default_rng([seed, k])  # a class's subset is independent of the others
        rows_a, rows_b = _cut(np.flatnonzero(ya == k), most, rng), \
            _cut(np.flatnonzero(yb == k), most, rng)
        if len(rows_a) < 2 or len(rows_b) < 2:
            out.append(None)
            continue
        spread = mean_pairwise_distance(a[rows_a])
        out.append(mean_pairwise_distance(b[rows_b]) / spread if spread > 0 else None)
    return out


def _labels(labels: object, n: int, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{name} labels must be {n} integers; got {y.dtype} of shape {y.shape}")
    return y


def _cut(rows: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= most else np.sort(rng.choice(rows, most, replace=False))
