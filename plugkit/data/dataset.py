"""The Dataset every reader returns, and the checks that make its invariants hold.

Families build themselves from `modality` and `meta`, so a reader's only job is to bring its
file into one of four fixed shapes; `validate` enforces them in one place, with messages that
name the file, so a bad file fails here and never deep inside a training step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from plugkit.errors import PlugkitError, UsageError
from plugkit.family import MODALITIES
from plugkit.formats import dates, sequence, tabular


class DataError(PlugkitError):
    """A data file that is missing, unreadable, empty or malformed: exit 1."""


@dataclass
class Dataset:
    """One dataset in memory.

    x: image float32 [N, C, H, W] in [0, 1]; table pandas DataFrame (original columns and
    dtypes); text list[str], one sequence each; sequence float32 [N, T, F].
    labels: int64 [N] with values 0..K-1, or None; classes: K names, or None.
    meta: what a family needs to build itself (channels/height/width, column kinds, vocab...).
    rows: for a subset, the rows of the whole dataset it holds (int64 [N], in order), else None.
    """

    name: str
    modality: str
    x: Any
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    meta: dict = field(default_factory=dict)
    rows: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: np.ndarray) -> Dataset:
        """The rows at `index` (an int array), with the same name, classes and meta."""
        if self.modality == "table":
            x = self.x.iloc[index].reset_index(drop=True)
        elif self.modality == "text":
            x = [self.x[i] for i in index]
        else:
            x = self.x[index]
        labels = None if self.labels is None else self.labels[index]
        rows = np.asarray(index, np.int64) if self.rows is None else self.rows[index]
        return replace(self, x=x, labels=labels, meta=dict(self.meta), rows=rows)


def check_modality(modality: str | None) -> None:
    if modality is not None and modality not in MODALITIES:
        raise UsageError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")


def as_labels(y: Any, n: int, source: str) -> np.ndarray:
    """Labels as int64 [n] with values exactly 0..K-1 (every class present)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be 1-D, got shape {list(y.shape)}")
    if len(y) != n:
        raise DataError(f"{source}: {len(y)} labels for {n} samples")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    present = np.unique(y)
    if len(present) and (present[0] != 0 or present[-1] != len(present) - 1):
        raise DataError(f"{source}: labels must be 0..K-1 with every class present, "
                        f"got values {_few(present)}")
    return y


def _few(values: np.ndarray) -> str:
    shown = ", ".join(map(str, values[:8]))
    return f"{{{shown}{', ...' if len(values) > 8 else ''}}}"


def validate(ds: Dataset) -> Dataset:
    """Checks the representation of `ds` and fills the meta every family relies on."""
    if len(ds) == 0:
        raise DataError(f"{ds.name}: empty (no samples)")
    if ds.modality in ("image", "sequence"):
        _check_array(ds)
    elif ds.modality == "table":
        _check_table(ds)
    if ds.labels is not None:
        ds.labels, ds.classes = _named_labels(ds.labels, ds.classes)
        ds.labels = as_labels(ds.labels, len(ds), ds.name)
        k = int(ds.labels.max()) + 1
        ds.classes = ds.classes if ds.classes is not None else [str(i) for i in range(k)]
        if len(ds.classes) != k:
            raise DataError(f"{ds.name}: {k} label values but {len(ds.classes)} class names")
    return ds


def _named_labels(y: Any, classes: list[str] | None) -> tuple[Any, list[str] | None]:
    """Labels given as class names ("cat", "dog"), as an image folder's sub-folders give
    them: their indices in the sorted names, and the names as the classes."""
    names = np.asarray(y)
    if classes is not None or names.dtype.kind not in "USO" or names.ndim != 1:
        return y, classes
    if not all(isinstance(v, str) for v in names.tolist()):
        return y, classes  # mixed objects: as_labels names the problem
    classes, index = np.unique(names, return_inverse=True)
    return index, [str(c) for c in classes]


def _check_array(ds: Dataset) -> None:
    x = ds.x
    rank = 4 if ds.modality == "image" else 3
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != rank:
        raise DataError(f"{ds.name}: {ds.modality} data must be float32 of rank {rank}")
    if not np.isfinite(x).all():
        raise DataError(f"{ds.name}: {ds.modality} data contains NaN or inf")
    if ds.modality == "image":
        if x.shape[1] not in (1, 3):
            raise DataError(f"{ds.name}: images must have 1 or 3 channels, got {x.shape[1]}")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{ds.name}: image values must lie in [0, 1]")
        ds.meta.update(channels=x.shape[1], height=x.shape[2], width=x.shape[3])
    else:  # per-feature moments: the codec standardizes sequences with them
        ds.meta.update(length=x.shape[1], features=x.shape[2], **sequence.moments(x))


def _check_table(ds: Dataset) -> None:
    df = ds.x
    if df.shape[1] == 0:
        raise DataError(f"{ds.name}: table has no columns")
    empty = [str(c) for c in df.columns if df[c].isna().all()]
    if empty:
        raise DataError(f"{ds.name}: column {empty[0]!r} has no values (all missing)")
    df, dates_spec = dates.to_numbers(df)  # dates train as numbers (plugkit.formats.dates)
    if dates_spec:
        ds.x, ds.meta["dates"] = df, dates_spec
    kinds = {str(c): column_kind(df[c]) for c in df.columns}
    numeric = df[[c for c in df.columns if kinds[str(c)] == "numeric"]]
    if numeric.shape[1] and np.isinf(numeric.to_numpy(dtype=np.float64)).any():
        bad = next(str(c) for c in numeric.columns if np.isinf(numeric[c].to_numpy(float)).any())
        raise DataError(f"{ds.name}: column {bad!r} contains inf")
    ds.meta["columns"] = kinds
    ds.meta["derived"] = tabular.derive(df, kinds)  # written from their parents when decoding
    ds.meta["encoding"] = tabular.fit(df.drop(columns=[d["name"] for d in ds.meta["derived"]]),
                                      kinds)


def column_kind(column: Any) -> str:
    """'numeric' for int/float columns, 'categorical' for everything else (text, bool, ...)."""
    from pandas.api import types

    numeric = types.is_numeric_dtype(column) and not types.is_bool_dtype(column)
    return "numeric" if numeric and not types.is_complex_dtype(column) else "categorical"
