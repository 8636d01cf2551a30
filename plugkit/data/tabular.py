"""Tables as vectors, and back: the representation table families train on.

Every column becomes one or more spans of a float row (Batch.x [B, D]):
  numeric      one value, standardized ((v - mean) / std); when the column has missing values
               a second, categorical span of width 2 says [present, missing]
  categorical  a one-hot over the column's categories; missing is a category of its own
A family sees only spans (`spans(meta)`): "numeric" spans are real values, "categorical" spans
are one-hot targets (its outputs there are logits or probabilities; decoding takes the argmax).
The encoding is fitted once when the data is loaded and stored in the run (meta["encoding"],
plain JSON), so sampling decodes rows back to the original columns, order and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MISSING = None  # the missing category's entry in a categorical column's "categories"


@dataclass(frozen=True)
class Span:
    kind: str  # "numeric" | "categorical"
    start: int
    end: int  # exclusive


def fit(df: Any, kinds: dict[str, str]) -> list[dict]:
    """The encoding of DataFrame `df` (column kinds from dataset.column_kind), as JSON."""
    return [_fit_numeric(name, df[name]) if kinds[str(name)] == "numeric"
            else _fit_categorical(name, df[name]) for name in df.columns]


def _fit_numeric(name: Any, column: Any) -> dict:
    values = column.to_numpy(dtype=np.float64)
    present = values[~np.isnan(values)]
    return {"name": str(name), "kind": "numeric", "dtype": str(column.dtype),
            "mean": float(present.mean()), "std": float(present.std()) or 1.0,
            "min": float(present.min()), "max": float(present.max()),
            "decimals": _decimals(present), "missing": bool(len(present) < len(values))}


def _decimals(values: np.ndarray, most: int = 6) -> int | None:
    """The fewest decimal places that write every value exactly (0 for whole numbers), or None
    beyond `most`: sampled values are rounded to the data's own precision."""
    for places in range(most + 1):  # rtol 1e-7: float32 data such as 5.1f counts as 5.1
        if np.allclose(values, np.round(values, places), rtol=1e-7, atol=1e-12):
            return places
    return None


def _fit_categorical(name: Any, column: Any) -> dict:
    present = column.dropna()
    categories = sorted({_plain(v) for v in present}, key=lambda v: (str(type(v)), v))
    if len(present) < len(column):
        categories.append(MISSING)
    return {"name": str(name), "kind": "categorical", "dtype": str(column.dtype),
            "categories": categories}


def _plain(value: Any) -> Any:
    """A JSON-safe category: numpy scalars become Python ones."""
    return value.item() if hasattr(value, "item") else value


def spans(encoding: list[dict]) -> list[Span]:
    """The layout of an encoded row, span by span, in column order."""
    out, start = [], 0
    for column in encoding:
        widths = ([("numeric", 1)] + ([("categorical", 2)] if column["missing"] else [])
                  if column["kind"] == "numeric" else [("categorical", len(column["categories"]))])
        for kind, width in widths:
            out.append(Span(kind, start, start + width))
            start += width
    return out


def width(encoding: list[dict]) -> int:
    return spans(encoding)[-1].end


def encode(df: Any, encoding: list[dict]) -> np.ndarray:
    """float32 [N, D] rows of `df` (which has the encoding's columns)."""
    parts = []
    for column in encoding:
        values = df[column["name"]]
        if column["kind"] == "numeric":
            v = values.to_numpy(dtype=np.float64)
            missing = np.isnan(v)
            parts.append(np.where(missing, 0.0, (v - column["mean"]) / column["std"])[:, None])
            if column["missing"]:
                parts.append(_one_hot(missing.astype(np.int64), 2))
        else:
            index = {c: i for i, c in enumerate(column["categories"])}
            codes = [index.get(MISSING if _isna(v) else _plain(v), -1) for v in values]
            parts.append(_one_hot(np.asarray(codes, dtype=np.int64), len(index)))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(codes), k))
    known = codes >= 0  # a category unseen at fit time encodes as all zeros
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def decode(rows: np.ndarray, encoding: list[dict]) -> Any:
    """A DataFrame with the original columns and dtypes from encoded rows [N, D]: numeric
    values de-standardized, clipped to the data's range and rounded to its precision,
    categorical spans and missing flags read by argmax."""
    import pandas as pd

    rows = rows.astype(np.float64)
    layout, out, i = spans(encoding), {}, 0
    for column in encoding:
        span = layout[i]
        block = rows[:, span.start:span.end]
        if column["kind"] == "numeric":
            v = np.clip(block[:, 0] * column["std"] + column["mean"], column["min"], column["max"])
            v = v if column["decimals"] is None else np.round(v, column["decimals"])
            if column["missing"]:
                i += 1
                flags = layout[i]
                v = np.where(rows[:, flags.start:flags.end].argmax(1) == 1, np.nan, v)
            out[column["name"]] = pd.Series(v).astype(_numeric_dtype(column, v))
        else:
            categories = np.asarray(column["categories"], dtype=object)
            values = pd.Series(categories[block.argmax(1)], dtype=object)
            complete = MISSING not in column["categories"]
            out[column["name"]] = values.astype(bool) if column["dtype"] == "bool" and complete \
                else values
        i += 1
    return pd.DataFrame(out)


def _numeric_dtype(column: dict, values: np.ndarray) -> str:
    """The column's own dtype where the values fit it (an int column with no gaps stays int)."""
    if column["dtype"].startswith(("int", "uint")) and not np.isnan(values).any():
        return column["dtype"]
    return "float64"
