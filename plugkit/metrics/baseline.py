"""The real-vs-real floor: what a distance reads between two samples of the same real data.

A distance means little alone: Fréchet distance, KS or detection AUC all sit above their ideal
value at a finite sample size. Reporting each one next to the same measure on two disjoint
halves of the real data, at the sample size of the comparison, says how much of it is noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from plugkit.errors import UsageError


def floor(fn: Callable[[Any, Any], Any], real: Any, n: int, *, seed: int = 0) -> Any:
    """fn(half_a, half_b) on two disjoint random halves of `real`, of `n` records each. `real`
    is an array ([N, ...], split on the first axis), a DataFrame (split by rows) or a list."""
    size = len(real)
    if n < 1 or 2 * n > size:
        raise UsageError(f"the floor needs 2 x n <= {size} real records; got n={n}")
    order = np.random.default_rng(seed).permutation(size)
    return fn(_take(real, order[:n]), _take(real, order[n:2 * n]))


def _take(records: Any, rows: np.ndarray) -> Any:
    if isinstance(records, pd.DataFrame):
        return records.iloc[rows].reset_index(drop=True)
    if isinstance(records, list | tuple):
        return [records[i] for i in rows]
    return np.asarray(records)[rows]
