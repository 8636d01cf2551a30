"""Distances between a real and a synthetic set of feature vectors (float arrays [N, d])."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from plugkit.errors import UsageError
from plugkit.metrics._inputs import features, finite, row_keys, same_width, strings

CHUNK = 1024  # query rows per distance block: 1024 x 10,000 float64 distances = 80 MB


def frechet_distance(a: object, b: object) -> float:
    """Fréchet distance between Gaussians fitted to two sets (Heusel et al. 2017, "GANs Trained
    by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"; FID on Inception
    features): ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}). 0 = same mean and
    covariance."""
    a, b = _pair(a, b, ("a", "b"), min_rows=2)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False), np.cov(b, rowvar=False))
    # S_a S_b is not symmetric, but sqrt(S_a) S_b sqrt(S_a) is, and has the same eigenvalues:
    # eigvalsh on it is exact where scipy.linalg.sqrtm can return complex noise.
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)
    trace_root = np.sqrt(eig).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(fd, 0.0))


def kid(a: object, b: object, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> dict[str, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
    MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets of
    min(subset_size, N_a, N_b) rows from each set. Returns {"kid", "kid_std"}; 0 in expectation
    for one distribution (small negative values happen)."""
    a, b = _pair(a, b, ("a", "b"), min_rows=2)
    if subsets < 1 or subset_size < 2:
        raise UsageError("kid needs subsets >= 1 and subset_size >= 2")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    scores = np.array([_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                                      b[rng.choice(len(b), m, replace=False)])
                       for _ in range(subsets)])
    return {"kid": float(scores.mean()), "kid_std": float(scores.std())}


def prdc(real: object, fake: object, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and
    Diversity Metrics for Generative Models"), each real point owning the ball out to its k-th
    nearest real neighbour:

    precision  share of fake points inside some real ball                       [0, 1]
    recall     share of real points inside some fake ball (fake k-NN radii)     [0, 1]
    density    mean number of real balls holding a fake point, divided by k     [0, inf), ~1
    coverage   share of real balls holding at least one fake point              [0, 1]
    """
    if k < 1:
        raise UsageError(f"prdc needs k >= 1; got {k}")
    real, fake = _pair(real, fake, ("real", "fake"), min_rows=k + 1)
    r, f = torch.from_numpy(real), torch.from_numpy(fake)
    real_radii, fake_radii = _kth_neighbour_distance(r, k), _kth_neighbour_distance(f, k)
    precise = torch.empty(len(f), dtype=torch.bool)
    balls_held = torch.empty(len(f))
    recalled = torch.zeros(len(r), dtype=torch.bool)
    nearest_fake = torch.full((len(r),), torch.inf, dtype=torch.float64)
    for rows, dist in _distance_blocks(f, r):  # dist[i, j] = |fake_i - real_j|
        inside_real = dist < real_radii
        precise[rows] = inside_real.any(1)
        balls_held[rows] = inside_real.sum(1, dtype=torch.float32)
        recalled |= (dist < fake_radii[rows, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, dist.min(0).values)
    return {"precision": precise.double().mean().item(),
            "recall": recalled.double().mean().item(),
            "density": balls_held.double().mean().item() / k,
            "coverage": (nearest_fake < real_radii).double().mean().item()}


def closest_distances(query: object, reference: object) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row, float64 [N_query]."""
    query, reference = _pair(query, reference, ("query", "reference"))
    q, ref = torch.from_numpy(query), torch.from_numpy(reference)
    out = torch.empty(len(q), dtype=torch.float64)
    for rows, dist in _distance_blocks(q, ref):
        out[rows] = dist.min(1).values
    return out.numpy()


def privacy(synthetic: object, train: object, holdout: object) -> dict[str, float]:
    """Distance to closest record (DCR) of synthetic rows against the training rows, measured
    against the DCR of held-out real rows, which the model never saw. Returns:

    dcr_synthetic_median  median distance from a synthetic row to its closest training row
    dcr_holdout_median    the same for held-out real rows: the level of fresh data
    dcr_ratio             the first over the second: 1 = no closer to the training data than
                          fresh real data, near 0 = copies (nan if the holdout median is 0)
    closer_than_holdout   share of synthetic rows closer to the training data than the median
                          held-out row: 0.5 for fresh data, 1 when everything is memorized
    """
    synthetic, train = _pair(synthetic, train, ("synthetic", "train"))
    holdout, _ = _pair(holdout, train, ("holdout", "train"))
    dcr_synthetic = closest_distances(synthetic, train)
    dcr_holdout = closest_distances(holdout, train)
    syn_median, hold_median = np.median(dcr_synthetic), np.median(dcr_holdout)
    return {"dcr_synthetic_median": float(syn_median),
            "dcr_holdout_median": float(hold_median),
            "dcr_ratio": float(syn_median / hold_median) if hold_median > 0 else float("nan"),
            "closer_than_holdout": float((dcr_synthetic < hold_median).mean())}


def exact_copy_rate(synthetic: object, train: object) -> float:
    """Share of synthetic records identical to some training record, in [0, 1]. Records are
    the rows of numeric arrays ([N, ...], compared by value, -0.0 == 0.0) or the items of lists
    of strings."""
    if _is_text(synthetic) or _is_text(train):
        syn, ref = strings(synthetic, "synthetic"), strings(train, "train")
        return float(pd.Series(syn, dtype=object).isin(ref).mean())
    syn, ref = row_keys(synthetic, "synthetic"), row_keys(train, "train")
    if syn.dtype != ref.dtype:
        raise UsageError("synthetic and train records must have the same shape; "
                         f"got {syn.dtype.itemsize // 8} and {ref.dtype.itemsize // 8} values")
    return float(np.isin(syn, ref).mean())


def _is_text(x: object) -> bool:
    if isinstance(x, np.ndarray | pd.Series):
        return x.dtype.kind in "OUS"
    return isinstance(x, list | tuple) and len(x) > 0 and isinstance(x[0], str)


def _pair(a: object, b: object, names: tuple[str, str], *,
          min_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    a = finite(features(a, names[0], min_rows=min_rows), names[0])
    b = finite(features(b, names[1], min_rows=min_rows), names[1])
    same_width(a, b, " and ".join(names))
    return a, b


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    eig, vec = np.linalg.eigh(cov)
    return (vec * np.sqrt(eig.clip(min=0))) @ vec.T


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return off_diagonal - 2 * kxy.mean()


def _distance_blocks(query: torch.Tensor,
                     reference: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    for start in range(0, len(query), CHUNK):
        rows = slice(start, start + CHUNK)
        yield rows, torch.cdist(query[rows], reference)


def _kth_neighbour_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row of the same set."""
    out = torch.empty(len(x), dtype=torch.float64)
    for rows, dist in _distance_blocks(x, x):
        # k + 1 smallest: each row's own zero distance is the first of them.
        out[rows] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return out
