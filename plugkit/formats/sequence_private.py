"""Sequences' standardization (plugkit.formats.sequence) measured under differential privacy.

`sequence.moments` reads every value: its means, stds and bounds would leak records that DP-SGD
then protects in vain. Here a record is one sequence [T, F], and each feature's mean and std come
from two noisy histograms of its values (Gaussian noise of std `sigma` on every count):
- where the values lie: a public grid of 10 bins a decade, both signs (tabular_private's grid,
  coarser: a feature spread over many fine cells would drown in their noise);
- how they lie there: 20 equal bins between the first and last cell that stood above the noise
  (the coarse cells again when the noise hid all of these).
A sequence's T values of a feature weigh 1/T each, so one record moves each histogram by at most
1 in L2 norm: 2 histograms a feature for plugkit.privacy.plan (HISTOGRAMS_PER_FEATURE). The
standardization only has to bring the values near unit scale (samples are destandardized by
the same numbers): these estimates come within a std of the mean and a factor of 2 of the std
(tested), not closer.

No bounds: whether a feature is ever negative is the records' to tell, so private samples are
not held inside them (docs/privacy.md).
"""

from __future__ import annotations

import numpy as np

from plugkit.formats.tabular_private import EDGES, empty_level

HISTOGRAMS_PER_FEATURE = 2
_COARSE = EDGES[::10]  # 10 bins a decade, from -1e9 to 1e9, no cell straddling 0 but one
_FINE_BINS = 20


def moments(x: np.ndarray, sigma: float, rng: np.random.Generator) -> dict:
    """meta["mean"], meta["std"] of sequences x [N, T, F] from their noisy histograms, and
    meta["private"]["released"]: per feature, whether any cell stood above the noise (if none
    did, the feature standardizes as if its mean were 0 and its std 1)."""
    length = x.shape[1]
    means, stds, released = [], [], []
    for f in range(x.shape[2]):
        values = x[..., f].astype(np.float64).ravel()
        mean, std = _feature(values, length, sigma, rng)
        released.append(std is not None)
        means.append(mean if std is not None else 0.0)
        stds.append(std if std else 1.0)
    return {"mean": means, "std": stds, "private": {"sigma": sigma, "released": released}}


def _feature(values: np.ndarray, length: int, sigma: float, rng: np.random.Generator
             ) -> tuple[float, float | None]:
    """(mean, std) of one feature's values; std None when the noise hid them."""
    edges = np.concatenate([[_COARSE[0] * 10], _COARSE, [_COARSE[-1] * 10]])
    coarse = _noisy(np.searchsorted(_COARSE, values, side="right"), len(edges) - 1, length,
                    sigma, rng)
    held = np.flatnonzero(coarse)
    if not len(held):
        return 0.0, None
    low, high = edges[held[0]], edges[held[-1] + 1]
    fine_edges = np.linspace(low, high, _FINE_BINS + 1)
    cell = np.clip(np.searchsorted(fine_edges, values, side="right") - 1, 0, _FINE_BINS - 1)
    # thresholded as the coarse cells: unthresholded, the noise of cells far from the values
    # outweighs them in the variance. The threshold cuts thin tails instead (a skewed
    # feature's std came out 0.64x its own), which standardizing can afford
    fine = _noisy(cell, _FINE_BINS, length, sigma, rng)
    if fine.sum() > 0:
        return _mean_std(fine, (fine_edges[:-1] + fine_edges[1:]) / 2)
    return _mean_std(coarse, (edges[:-1] + edges[1:]) / 2)  # the noise hid the fine cells


def _noisy(cell: np.ndarray, cells: int, length: int, sigma: float,
           rng: np.random.Generator) -> np.ndarray:
    """The histogram of `cell` indices, each value weighing 1/length, with noise; a cell the
    noise alone reaches with probability 1 / (200 cells) reads as empty, as in
    tabular_private, so that the noise of empty cells does not pile up into tails."""
    weight = np.bincount(cell, minlength=cells)[:cells] / length
    if not sigma:
        return weight
    noisy = weight + rng.normal(0.0, sigma, cells)
    return np.where(noisy < empty_level(sigma, cells), 0.0, noisy)


def _mean_std(weight: np.ndarray, middles: np.ndarray) -> tuple[float, float]:
    total = weight.sum()
    mean = float(weight @ middles / total)
    return mean, float(np.sqrt(weight @ (middles - mean) ** 2 / total))
