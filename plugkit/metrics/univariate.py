"""Distances between two samples of one variable: the building blocks of the per-column,
per-feature and length comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd

from plugkit.errors import UsageError


def ks_statistic(a: object, b: object) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs.

    Missing values are dropped (report the missing rates separately). In [0, 1]; 0 = the same
    empirical distribution. Convention: 1.0 when exactly one side has no values left, 0.0 when
    neither has.
    """
    x, y = _values(a), _values(b)
    if x.size == 0 or y.size == 0:
        return float(x.size != y.size)
    x.sort()
    y.sort()
    # The CDFs only jump at sample points, so the supremum is attained at one of them.
    at = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, at, side="right") / x.size
    cdf_y = np.searchsorted(y, at, side="right") / y.size
    return float(np.abs(cdf_x - cdf_y).max())


def total_variation(a: object, b: object) -> float:
    """Total variation distance between the value frequencies of two samples of labels:
    0.5 * sum_v |p(v) - q(v)|. Missing values count as one more label. In [0, 1]; 0 = the same
    frequencies, 1 = no label in common."""
    x, y = pd.Series(a), pd.Series(b)
    if x.size == 0 or y.size == 0:
        raise UsageError("total variation needs two non-empty samples")
    codes, _ = pd.factorize(pd.concat([x, y], ignore_index=True), use_na_sentinel=False)
    k = int(codes.max()) + 1
    p = np.bincount(codes[: x.size], minlength=k) / x.size
    q = np.bincount(codes[x.size:], minlength=k) / y.size
    return float(0.5 * np.abs(p - q).sum())


def _values(a: object) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64).ravel()
    return x[~np.isnan(x)]
