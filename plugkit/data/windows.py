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


def _series(ds: Dataset) -> np.ndarray:
    if ds.modality == "table":
        # a date column is the series' time index, not one of its features: left out
        index = set(ds.meta.get("dates", {}))
        kinds = {name: kind for name, kind in ds.meta.get("columns", {}).items()
                 if name not in index}
        text = [name for name, kind in kinds.items() if kind != "numeric"]
        if text:
            raise DataError(f"{ds.name}: windows need numeric columns; {text[0]!r} is not")
        if not kinds:
            raise DataError(f"{ds.name}: windows need numeric columns besides its dates")
        values = ds.x[[c for c in ds.x.columns if str(c) in kinds]].to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            raise DataError(f"{ds.name}: the series has missing values; fill them first")
        return values
    if ds.modality == "sequence" and len(ds.x) == 1:
        return ds.x[0]
    raise not_a_series(ds.name, f"{ds.modality} data of {len(ds)} samples")


def not_a_series(name: str, what: str) -> UsageError:
    return UsageError(f"`window` cuts one long series (a table of numeric columns, rows in time "
                      f"order), but {name} is {what}")
