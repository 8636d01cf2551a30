"""Real-valued sequences as families see them: float32 [N, T, F] standardized per feature.

The mean and std of every feature are measured once, when the data is loaded, and kept in the
data's meta (so in the run), so samples come back in the data's units years later.

A feature the data shows to be bounded is first mapped onto the whole real line and
standardized there, so that whatever a family draws decodes inside the bounds by construction
(on raw sunspot counts, vae and diffusion put 0.7-1.7% of their values below zero; now none,
docs/results.md). The bounds are in
meta["bounds"], one entry per feature (None: unbounded); a meta without the key (runs made
before it) decodes exactly as it always did.
"""

from __future__ import annotations

import numpy as np


def moments(x: np.ndarray) -> dict:
    """meta["mean"], meta["std"], meta["window_spread"] (and meta["bounds"] when a feature has
    one) of windows x [N, T, F]: per feature, a constant feature's std taken as 1 so that it
    standardizes to 0 instead of dividing by 0 (its spread too)."""
    bounds = [_bounds(x[..., f].astype(np.float64)) for f in range(x.shape[2])]
    y = _forward(x, bounds)
    mean, std = y.mean(axis=(0, 1), dtype=np.float64), y.std(axis=(0, 1), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    # the root mean square, over the windows, of each window's own std, standardized: how
    # far a window strays from its mean (co2: 0.13, its trend spans the rest)
    spread = np.sqrt((((y - mean) / std).var(axis=1, dtype=np.float64)).mean(0))
    meta = {"mean": mean.tolist(), "std": std.tolist(),
            "window_spread": np.where(spread > 0, spread, 1.0).tolist()}
    return meta | {"bounds": bounds} if any(bounds) else meta


def standardize(x: np.ndarray, meta: dict) -> np.ndarray:
    mean, std = _moments(meta)
    return ((_forward(x, meta.get("bounds")) - mean) / std).astype(np.float32)


def destandardize(x: np.ndarray, meta: dict) -> np.ndarray:
    mean, std = _moments(meta)
    return _inverse(x * std + mean, meta.get("bounds")).astype(np.float32)


def _moments(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std, shaped to broadcast over [N, T, F]."""
    return np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)


def _bounds(v: np.ndarray) -> dict | None:
    """The bounds one feature's values v show: 0 below when none is negative, and 1 above as
    well when all lie in [0, 1] (a share, a probability, min-max scaled data). Never the
    observed range itself: an ordinary series sets new highs and lows (co2 climbs every year),
    and a wall at its last extreme would both forbid them and stretch the values beside it.
    A bound the data sits far from (co2's 0, 18 std below its lowest week) costs nothing: the
    map is affine there. None for a negative value, a constant, or values all on the bounds (flags).

    gap: half the smallest distance from a bound of any value off it. Values on a bound
    (sunspots has exact zeros) stand in at that distance, which the line can hold, and come
    back as the bound; the data's own values are all at least twice as far and come back as
    they were. exact: the bounds the data has values on, the only ones samples snap onto (a
    positive series with no zeros gets none)."""
    if v.min() < 0 or v.min() == v.max():
        return None
    upper = 1.0 if v.max() <= 1 else None
    distance = np.minimum(v, 1 - v) if upper else v
    if not (distance > 0).any():
        return None
    exact = (["lower"] if (v == 0).any() else []) + (["upper"] if upper and (v == 1).any() else [])
    spec = {"lower": 0.0, "gap": float(distance[distance > 0].min()) / 2, "exact": exact}
    # softplus⁻¹(v / scale) is log-like within about a std of 0 and close to v / scale
    # beyond, so only the values near the bound are reshaped
    return spec | ({"upper": upper} if upper else {"scale": float(v.std())})


def _forward(x: np.ndarray, bounds: list | None) -> np.ndarray:
    """x [N, T, F] with each bounded feature mapped onto the real line (float64); x itself
    when none is, so that runs without bounds standardize bit for bit as before."""
    if not bounds:
        return x
    y = x.astype(np.float64)
    for f, spec in enumerate(bounds):
        if spec is None:
            continue
        lower, upper, gap = spec["lower"], spec.get("upper"), spec["gap"]
        if upper is None:  # softplus⁻¹(z) = log(eˣ - 1), written to stay finite for large z
            z = np.maximum(y[..., f] - lower, gap) / spec["scale"]
            y[..., f] = z + np.log(-np.expm1(-z))
        else:  # logit
            width = upper - lower
            u = np.clip((y[..., f] - lower) / width, gap / width, 1 - gap / width)
            y[..., f] = np.log(u) - np.log1p(-u)
    return y


def _inverse(y: np.ndarray, bounds: list | None) -> np.ndarray:
    """_forward undone. A value within gap·√2 of a bound the data has values on, nearer (in
    ratio) the stand-in at gap than the data's nearest values at 2·gap, snaps onto it: the
    data's values on a bound come back exactly, and samples have them as the data does. (Runs
    made before `exact` was recorded snap onto every bound, as they always did.)"""
    if not bounds:
        return y
    x = y.astype(np.float64)
    for f, spec in enumerate(bounds):
        if spec is None:
            continue
        lower, upper, gap = spec["lower"], spec.get("upper"), spec["gap"]
        exact = spec.get("exact", ("lower", "upper"))
        near_lower = gap * np.sqrt(2) if "lower" in exact else 0.0
        near_upper = gap * np.sqrt(2) if "upper" in exact else 0.0
        if upper is None:
            z = spec["scale"] * np.logaddexp(0, x[..., f])  # softplus, > 0
            x[..., f] = lower + np.where(z < near_lower, 0, z)
        else:
            width = upper - lower
            below, above = np.exp(-np.logaddexp(0, [-x[..., f], x[..., f]]))  # σ(y), σ(-y)
            z = np.where(below * width < near_lower, 0, below * width)
            x[..., f] = lower + np.where(above * width < near_upper, width, z)
    return x
