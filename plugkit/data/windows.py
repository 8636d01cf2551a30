"""Long series to training windows: `plugkit train lstm --data series.csv --window 48`.

A sequence family trains on many equal-length sequences [N, T, F]; a user often has one long
series instead (a CSV with a row per time step and a numeric column per feature, or a 1-D/2-D
array). Cutting every window of `length` steps, `stride` apart, turns the one into the other;
the run records the window so eval and resume cut the same ones.
"""

from __future__ import annotations

import numpy as np

from plugkit.data.dataset import DataError, Dataset, validate
from plugkit.errors import UsageError


def windows(ds: Dataset, length: int, stride: int = 1) -> Dataset:
    """Every window of `length` consecutive rows of the series in `ds`, `stride` apart."""
    if length < 2 or stride < 1:
        raise UsageError(f"`window` must be at least 2 and the stride at least 1, got "
                         f"{length} and {stride}")
    series = _series(ds)  # (T, F)
    if len(series) < length:
        raise DataError(f"{ds.name}: {len(series)} time steps, fewer than one window of "
                        f"{length}")
    view = np.lib.stride_tricks.sliding_window_view(series, length, axis=0)  # (N, F, length)
    x = np.ascontiguousarray(view[::stride].transpose(0, 2, 1), dtype=np.float32)
    return validate(Dataset(ds.name, "sequence", x, meta={"window": [length, stride]}))


def starts(ds: Dataset) -> np.ndarray | None:
    """Where each window of `ds` starts in its series (int64 [N]), when its sequences are
    windows of one long series (a built-in's, meta["series_length"], or `window`'s); None
    when each sequence is a record of its own."""
    if "window" in ds.meta:
        stride = ds.meta["window"][1]
    elif "series_length" in ds.meta:
        stride = 1
    else:
        return None
    rows = np.arange(len(ds), dtype=np.int64) if ds.rows is None else ds.rows
    return rows * stride


# a held-out block is at least this many windows' reach long: each block costs the training
# part the windows that overlap it (a reach on either side), so short blocks would cost more
# than they hold out
BLOCK_REACHES = 4
MAX_BLOCKS = 5  # spread over the series: a trend's every era is checked, up to this many


def held_out_blocks(ds: Dataset, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of windows of one series: val is up to MAX_BLOCKS runs of
    consecutive windows, one at a seeded place in each equal part of the series, about n_val
    in all; train is every window that shares no time step with any val window.

    A shuffled split of overlapping windows validates on values the training windows hold
    (a window of 52 steps shares 51 with each neighbour), so its validation loss, best weights
    and the held-out side of eval's privacy measures would all be too kind."""
    first = starts(ds)
    length = ds.x.shape[1]
    reach = int(np.searchsorted(first, first[0] + length))  # windows overlapping the first
    n = len(first)
    blocks = int(np.clip(n_val // (BLOCK_REACHES * reach), 1, MAX_BLOCKS))
    sizes = np.full(blocks, n_val // blocks) + (np.arange(blocks) < n_val % blocks)
    bounds = np.linspace(0, n, blocks + 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    val = []
    for lo, hi, size in zip(bounds[:-1], bounds[1:], sizes, strict=True):
        place = lo + int(rng.integers(0, max(hi - lo - size, 0) + 1))
        val.append(np.arange(place, min(place + size, n)))
    val = np.unique(np.concatenate(val))  # sorted; blocks meet only when rounding runs over
    # a window overlaps val when a val window starts within `length` steps of its start
    near = np.searchsorted(first[val], first - length, side="right")
    overlaps = (near < len(val)) & (first[val][np.minimum(near, len(val) - 1)] < first + length)
    train = np.flatnonzero(~overlaps)
    if len(train) == 0:
        raise DataError(f"{ds.name}: {n} windows of {length} steps are too few to hold out "
                        f"validation windows that share no step with the training ones; use "
                        f"a shorter window or a longer series")
    return train, val


def _series(ds: Dataset) -> np.ndarray:
    if ds.modality == "table":
        kinds = ds.meta.get("columns", {})
        text = [name for name, kind in kinds.items() if kind != "numeric"]
        if text:
            raise DataError(f"{ds.name}: windows need numeric columns; {text[0]!r} is not")
        values = ds.x.to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            raise DataError(f"{ds.name}: the series has missing values; fill them first")
        return values
    if ds.modality == "sequence" and len(ds.x) == 1:
        return ds.x[0]
    raise not_a_series(ds.name, f"{ds.modality} data of {len(ds)} samples")


def not_a_series(name: str, what: str) -> UsageError:
    return UsageError(f"`window` cuts one long series (a table of numeric columns, rows in time "
                      f"order), but {name} is {what}")
