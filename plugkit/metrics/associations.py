"""Pairwise association between the columns of one table, whatever their kinds:

numeric-numeric          Pearson correlation (pairwise complete rows)        [-1, 1]
categorical-categorical  Cramér's V (Cramér 1946), missing as a category     [0, 1]
categorical-numeric      correlation ratio eta (Pearson 1905)                [0, 1]

An undefined association (a constant column) counts as 0: no association.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd


def association_matrix(df: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Symmetric matrix of associations between the columns of `df`; `kinds` maps each column
    to "numeric" or "categorical" (plugkit.metrics.tables.column_kinds)."""
    names = list(df.columns)
    out = np.eye(len(names))
    numeric = [i for i, c in enumerate(names) if kinds[c] == "numeric"]
    pearson = df.iloc[:, numeric].astype(np.float64).corr().fillna(0.0).to_numpy()
    out[np.ix_(numeric, numeric)] = pearson
    for i, j in combinations(range(len(names)), 2):
        a, b = df.iloc[:, i], df.iloc[:, j]
        kind_a, kind_b = kinds[names[i]], kinds[names[j]]
        if kind_a == kind_b == "numeric":
            continue  # Pearson, all pairs in one corr() above
        if kind_a == kind_b == "categorical":
            value = cramers_v(a, b)
        elif kind_a == "categorical":
            value = correlation_ratio(a, b)
        else:
            value = correlation_ratio(b, a)
        out[i, j] = out[j, i] = value
    np.fill_diagonal(out, 1.0)  # fillna(0) also hit a constant column's own correlation
    return pd.DataFrame(out, index=names, columns=names)


def cramers_v(x: pd.Series, y: pd.Series) -> float:
    """sqrt(chi^2 / (n (min(r, c) - 1))) of the r x c contingency table: 1 when either column
    determines the other, 0 when they are independent in the sample."""
    (cx, kx), (cy, ky) = _codes(x), _codes(y)
    if min(kx, ky) < 2:
        return 0.0
    observed = np.bincount(cx * ky + cy, minlength=kx * ky).reshape(kx, ky) / len(cx)
    expected = np.outer(observed.sum(1), observed.sum(0))
    phi2 = (observed**2 / expected).sum() - 1  # chi^2 / n, from proportions
    return float(np.sqrt(max(phi2, 0.0) / (min(kx, ky) - 1)))


def correlation_ratio(categories: pd.Series, values: pd.Series) -> float:
    """eta = sqrt(between-category sum of squares / total sum of squares) of a numeric column
    grouped by a categorical one; rows missing the numeric value are left out."""
    values = values.astype(np.float64).to_numpy()
    kept = ~np.isnan(values)
    codes, k = _codes(categories[kept])
    v = values[kept]
    total = ((v - v.mean()) ** 2).sum() if v.size else 0.0
    if total == 0:
        return 0.0
    counts = np.bincount(codes, minlength=k)
    means = np.bincount(codes, weights=v, minlength=k) / np.maximum(counts, 1)
    between = (counts * (means - v.mean()) ** 2).sum()
    return float(np.sqrt(between / total))


def _codes(s: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(s, use_na_sentinel=False)
    return codes, len(uniques)
