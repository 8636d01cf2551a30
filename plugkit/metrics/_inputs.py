"""Input checks shared by the metric modules: one clear UsageError line per mistake."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from plugkit.errors import UsageError


def features(x: object, name: str, *, min_rows: int = 1) -> np.ndarray:
    """`x` as a float64 [N, d] array, or a UsageError saying what is wrong with it."""
    try:
        arr = np.ascontiguousarray(x, dtype=np.float64)  # torch refuses negative strides
    except (TypeError, ValueError) as err:
        raise UsageError(f"{name} must be a numeric array: {err}") from None
    if arr.ndim != 2:
        raise UsageError(f"{name} must be a 2-D array [N, d]; got shape {arr.shape}")
    if arr.shape[0] < min_rows or arr.shape[1] == 0:
        raise UsageError(f"{name} needs at least {min_rows} row(s) and 1 column; "
                         f"got shape {arr.shape}")
    return arr


def finite(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise UsageError(f"{name} contains NaN or infinite values")
    return arr


def same_width(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise UsageError(f"{names} must have the same shape past the first axis; "
                         f"got {a.shape} and {b.shape}")


def row_keys(x: object, name: str) -> np.ndarray:
    """Each row of `x` ([N, ...]) as one opaque scalar of its float64 bytes, so that numpy can
    compare, sort and count whole rows."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{name} must be numeric records or a list of strings: {err}") from None
    if arr.ndim == 0 or len(arr) == 0:
        raise UsageError(f"{name} must be a non-empty array of records; got shape {arr.shape}")
    rows = np.ascontiguousarray(arr.reshape(len(arr), -1) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()


def strings(x: object, name: str) -> list[str]:
    """`x` (a list, array, Series...) as a non-empty list of str; a lone str is a mistake, not
    a list of characters."""
    if isinstance(x, str | bytes) or not isinstance(x, Iterable):
        raise UsageError(f"{name} must be a list of strings; got {type(x).__name__}")
    items = list(x)
    if not items:
        raise UsageError(f"{name} is empty")
    if not all(isinstance(s, str) for s in items):
        raise UsageError(f"{name} must contain only strings")
    return items
