"""Real-valued sequences as families see them: float32 [N, T, F] standardized per feature.

The mean and std of every feature are measured once, when the data is loaded, and kept in the
data's meta (so in the run), so samples come back in the data's units years later.
"""

from __future__ import annotations

import numpy as np


def moments(x: np.ndarray) -> dict:
    """meta["mean"], meta["std"] of windows x [N, T, F]: per feature, a constant feature's std
    taken as 1 so that it standardizes to 0 instead of dividing by 0."""
    std = x.std(axis=(0, 1), dtype=np.float64)
    return {"mean": x.mean(axis=(0, 1), dtype=np.float64).tolist(),
            "std": np.where(std > 0, std, 1.0).tolist()}


def standardize(x: np.ndarray, meta: dict) -> np.ndarray:
    mean, std = _moments(meta)
    return ((x - mean) / std).astype(np.float32)


def destandardize(x: np.ndarray, meta: dict) -> np.ndarray:
    mean, std = _moments(meta)
    return (x * std + mean).astype(np.float32)


def _moments(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std, shaped to broadcast over [N, T, F]."""
    return np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
