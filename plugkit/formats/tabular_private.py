"""A table's encoding (plugkit.formats.tabular) fitted under differential privacy.

`tabular.fit` reads every value of the data: its Gaussian mixtures, point modes, ranges,
decimals and category counts would each leak records that DP-SGD then protects in vain. Here
every one of them comes from one histogram per column, each count with Gaussian noise of std
`sigma` (plugkit.privacy plans it and accounts for all of them together), or from the schema
(column names, kinds and dtypes), which is not private:

- numeric column: a histogram over a public grid of bin edges (0 and +-10^(k/100), k from -300
  to 900: 1e-3 to 1e9 in 100 bins a decade; exact zeros in a cell of their own, since they are
  the commonest spike in real tables); cells the noise alone would rarely reach read as empty.
  The modes are read off its cumulative counts:
  one between each pair of the quantiles QUANTILES (a point mode at 0 where zeros fill a
  stretch), the range between the outer ones. Decimals: 0 for an integer dtype, else none.
  Every column may be missing (a missing span always), as its share is drawn from the counts.
- categorical column: noisy counts of the categories present, and a category is listed only
  when its noisy count clears `threshold`: naming a category that one record holds is itself
  a leak (partition selection: Korolova et al., WWW 2009; Wilson et al., PETS 2020). Rows of
  an unlisted category encode as missing ("unlisted": "missing"); the missing category is
  always listed.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from plugkit.formats import tabular

QUANTILES = (0.002, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.998)
# 100 bins a decade (2.3% wide): a spike such as hours per week's 40 (47% of adult's rows)
# stays within one integer; at 10 a decade it spread over 40..50 (KS 0.32)
_MAGNITUDES = 10.0 ** (np.arange(-300, 901) / 100)  # 1e-3 .. 1e9
EDGES = np.concatenate([-_MAGNITUDES[::-1], _MAGNITUDES])  # zeros have their own cell
UNLISTED = "missing"
GROUP = 10  # grid cells judged together as empty or not: a tenth of a decade


def fit(df: Any, kinds: dict[str, str], sigma: float, threshold: float,
        rng: np.random.Generator) -> list[dict]:
    """The encoding of `df` from its histograms, each count with Gaussian noise of std `sigma`,
    a category named when its noisy count clears `threshold`; in tabular.fit's format."""
    return [_numeric(name, df[name], sigma, rng) if kinds[str(name)] == "numeric"
            else _categorical(name, df[name], sigma, threshold, rng) for name in df.columns]


def _numeric(name: Any, column: Any, sigma: float, rng: np.random.Generator) -> dict:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    present = values[~np.isnan(values)]
    # cells: [missing, below the grid, EDGES' bins (with zero's cell at its middle), above]
    cell = np.searchsorted(EDGES, present, side="right") + 1  # 1 .. len(EDGES) + 1
    cell = np.where(present == 0, 0, cell)  # zero's own cell, after the missing one
    counts = np.bincount(np.concatenate([cell + 1, np.zeros(len(values) - len(present), int)]),
                         minlength=len(EDGES) + 3).astype(np.float64)
    noisy = counts + rng.normal(0.0, sigma, counts.shape)
    # post-processing (free): a cell the noise alone reaches with probability 1 / (200 cells)
    # is read as empty, so that the noise of the ~2,400 empty cells does not pile up into tails
    # the data does not have (1 column in 200 keeps one such cell)
    level = empty_level(sigma, len(counts))
    missing, zeros = (v if v >= level else 0.0 for v in noisy[:2])
    grid = _occupied(noisy[2:], sigma)  # len(EDGES) + 1 cells
    spikes = _spikes(grid, zeros) if column.dtype.kind in "iu" else {}
    rest = grid.copy()
    rest[list(spikes)] = 0.0
    points = _quantiles(zeros, rest)
    modes = _with_spikes(_modes(points), spikes, grid, zeros)
    values = [m["mean"] for m in modes]
    return {"name": str(name), "kind": "numeric", "dtype": str(column.dtype), "modes": modes,
            "min": min(values + points[:1]), "max": max(values + points[-1:]),
            "decimals": 0 if column.dtype.kind in "iu" else None, "missing": True,
            "private": {"sigma": sigma, "released": bool(zeros + grid.sum() > 0),
                        "missing_share": float(missing / max(missing + zeros + grid.sum(), 1.0))}}


def _spikes(grid: np.ndarray, zeros: float) -> dict[int, float]:
    """{cell: its integer} of an integer column's grid cells that hold one integer and at
    least tabular.POINT_SHARE of the noisy counts: a value that common is a mode of its own
    (std 0) in tabular.fit, and a cell that narrow says which value it is (below ~43, and
    wherever a cell holds one integer: hours per week's 40)."""
    total = zeros + grid.sum()
    lows = np.concatenate([[EDGES[0] * 10], EDGES])
    highs = np.concatenate([EDGES, [EDGES[-1] * 10]])
    first, after = np.ceil(lows), np.ceil(highs)  # the integers in [low, high)
    one = (after - first == 1) & (grid >= max(tabular.POINT_SHARE * total, 1.0))
    return {int(i): float(first[i]) for i in np.flatnonzero(one)}


def _with_spikes(modes: list[dict], spikes: dict[int, float], grid: np.ndarray,
                 zeros: float) -> list[dict]:
    """A point mode per spike, weighted by its count, and the quantile modes of the rest of
    the column (`modes`) by the rest's share, dropped when it is too thin to matter; sorted by
    mean."""
    total = zeros + grid.sum()
    if not spikes or total <= 0:
        return modes
    points = [{"weight": float(grid[i] / total), "mean": v, "std": 0.0}
              for i, v in spikes.items()]
    rest = 1.0 - sum(p["weight"] for p in points)
    kept = [dict(m, weight=m["weight"] * rest) for m in modes] \
        if rest >= tabular.POINT_SHARE else []
    out = sorted(kept + points, key=lambda m: (m["mean"], m["std"]))
    scale = sum(m["weight"] for m in out)
    return [dict(m, weight=m["weight"] / scale) for m in out]


def _occupied(grid: np.ndarray, sigma: float) -> np.ndarray:
    """The grid's noisy counts where the data lies, 0 elsewhere. Cells go in groups of GROUP
    (a tenth of a decade): a group whose noisy sum clears the empty level of a group keeps
    that sum, shared among its cells as their counts are (negatives as 0), so that clipping
    adds no mass; any other cell is kept only when it clears the level of a cell alone (a
    spike: capital gain's 99,999). Judged only cell by cell, a thin tail vanished: on adult
    at epsilon 1 each of fnlwgt's cells below 80,000 held fewer rows than the level, its range
    started at 82,000 and its KS was 0.13."""
    groups = -(-len(grid) // GROUP)
    padded = np.zeros(groups * GROUP)
    padded[:len(grid)] = grid
    cells = padded.reshape(groups, GROUP)
    sums = cells.sum(1, keepdims=True)
    clipped = np.maximum(cells, 0.0)
    shared = clipped * (sums / np.maximum(clipped.sum(1, keepdims=True), 1e-12))
    alone = np.where(cells >= empty_level(sigma, len(grid)), cells, 0.0)
    kept = sums >= empty_level(sigma * np.sqrt(GROUP), groups)
    return np.where(kept, shared, alone).ravel()[:len(grid)]


def empty_level(sigma: float, cells: int) -> float:
    """The noisy count below which a cell reads as empty: the level the noise alone (std
    sigma) reaches in one cell of `cells` with probability 1 / (200 cells)."""
    return sigma * NormalDist().inv_cdf(1 - 1 / (200 * cells))


def _quantiles(zeros: float, grid: np.ndarray) -> list[float]:
    """QUANTILES of the values from their noisy histogram: within a bin linearly between its
    edges (the outer cells span one more decade), exactly 0 within zero's cell."""
    middle = len(EDGES) // 2  # grid cell `middle` straddles 0: it holds (-1e-3, 1e-3) \ {0}
    lows = np.concatenate([[EDGES[0] * 10], EDGES])
    highs = np.concatenate([EDGES, [EDGES[-1] * 10]])
    weights = np.concatenate([grid[:middle], [zeros], grid[middle:]])
    lows = np.concatenate([lows[:middle], [0.0], lows[middle:]])
    highs = np.concatenate([highs[:middle], [0.0], highs[middle:]])
    total = weights.sum()
    if total <= 0:  # noise took everything: one mode at 0
        return [0.0] * len(QUANTILES)
    cumulative = np.cumsum(weights) / total
    points = []
    for q in QUANTILES:
        i = min(int(np.searchsorted(cumulative, q)), len(weights) - 1)
        before = cumulative[i - 1] if i else 0.0
        within = (q - before) / max(cumulative[i] - before, 1e-12)
        points.append(float(lows[i] + within * (highs[i] - lows[i])))
    return points


def _modes(points: list[float]) -> list[dict]:
    """A mode per stretch between consecutive quantile points, weighted by the probability
    between them: a point mode where the stretch is one value (zeros), else a Gaussian whose
    +-2 std span the stretch. Neighbouring point modes merge."""
    modes: list[dict] = []
    for i in range(len(points) - 1):
        a, b, weight = points[i], points[i + 1], QUANTILES[i + 1] - QUANTILES[i]
        if a == b and modes and modes[-1]["std"] == 0.0 and modes[-1]["mean"] == a:
            modes[-1]["weight"] += weight
        elif a == b:
            modes.append({"weight": weight, "mean": a, "std": 0.0})
        else:
            modes.append({"weight": weight, "mean": (a + b) / 2, "std": (b - a) / 4})
    total = sum(m["weight"] for m in modes)
    return [dict(m, weight=m["weight"] / total) for m in modes]


def _categorical(name: Any, column: Any, sigma: float, threshold: float,
                 rng: np.random.Generator) -> dict:
    present = column.dropna()
    seen = sorted({tabular.plain(v) for v in present}, key=lambda v: (str(type(v)), v))
    index = {c: i for i, c in enumerate(seen)}
    counts = np.bincount([index[tabular.plain(v)] for v in present], minlength=len(seen))
    noisy = counts + rng.normal(0.0, sigma, len(seen))
    listed = noisy >= threshold
    missing = len(column) - len(present) + rng.normal(0.0, sigma)
    categories = [c for c, keep in zip(seen, listed, strict=True) if keep] + [tabular.MISSING]
    released = [max(round(float(c)), 1) for c in noisy[listed]] + [max(round(missing), 1)]
    return {"name": str(name), "kind": "categorical", "dtype": str(column.dtype),
            "categories": categories, "counts": released, "unlisted": UNLISTED,
            "private": {"sigma": sigma, "threshold": threshold, "released": bool(listed.any())}}


def unreleased(encoding: list[dict]) -> list[str]:
    """The columns of which the noise let nothing through: no category cleared the threshold,
    or no numeric cell stood above the noise. Their samples are all missing (or 0); a user
    must hear it, since the cause (too few records for the epsilon) is theirs to change."""
    return [c["name"] for c in encoding if not c.get("private", {}).get("released", True)]
