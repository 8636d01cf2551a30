"""Data loading: `--data` (a built-in dataset name or a path) to a validated Dataset.

    ds = load("digits")                     # built-in, see available_datasets()
    ds = load("faces/", image_size=32)      # a folder of images, sub-folders = classes
    ds = load("book.txt", max_length=128)   # text: longer lines cut into windows of 128
    train, val = split(ds, val_fraction=0.1, seed=0)

Bad input raises DataError (exit 1) or UsageError (exit 2) with one line naming the file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from plugkit.data import builtin, memory
from plugkit.data.builtin import available_datasets
from plugkit.data.dataset import MODALITIES, DataError, Dataset, check_modality, validate
from plugkit.errors import UsageError
from plugkit.formats import text

__all__ = ["MODALITIES", "DataError", "Dataset", "available_datasets", "load", "split"]


def load(spec: Any, modality: str | None = None, image_size: int | None = None,
         window: int | None = None, max_length: int | None = None) -> Dataset:
    """The dataset `spec` names: a built-in (see available_datasets()), a file/folder path, or
    in-memory data (plugkit.data.memory: a DataFrame, an array, a list of strings); with
    `window`, every window of that many steps of the long series it holds. Text lines
    longer than `max_length` characters (default text.MAX_LENGTH) become consecutive windows
    (text.cut), so a book without line breaks trains in rows of bounded length."""
    if max_length is not None:
        _check_max_length(spec, modality, window, max_length)
    if window is not None:
        if modality not in (None, "sequence"):
            raise UsageError(f"`window` makes sequences, not {modality} data")
        from plugkit.data.windows import not_a_series, windows

        # a built-in that is no series is refused before it is loaded (or found missing)
        known = None if memory.is_memory(spec) else builtin.REGISTRY.get(spec)
        if known is not None and known.modality in ("image", "text"):
            raise not_a_series(spec, f"{known.modality} data")
        return windows(load(spec, None, image_size), window)
    check_modality(modality)
    if image_size is not None and image_size < 1:
        raise UsageError(f"`image_size` must be a positive integer, got {image_size}")
    if memory.is_memory(spec):
        ds = memory.from_memory(spec, modality, image_size)
    elif spec in builtin.REGISTRY:
        ds = builtin.load(spec, modality, image_size)
    else:
        ds = _read_path(spec, modality, image_size)
    if image_size is not None and ds.modality != "image":
        raise UsageError(f"`image_size` resizes images, and {ds.name} is {ds.modality} data")
    return _text_rows(validate(ds), max_length)


def _read_path(spec: str, modality: str | None, image_size: int | None) -> Dataset:
    path = Path(spec).expanduser()
    if not path.exists() and not _looks_like_path(spec):
        names = ", ".join(builtin.REGISTRY)
        raise UsageError(f"unknown dataset {spec!r}; built-in: {names} (see `plugkit datasets`),"
                         " or give a path to a folder of images or a .npy/.npz/.csv/.parquet/"
                         ".txt file")
    from plugkit.data.readers import read_path

    return read_path(path, modality, image_size)


def _check_max_length(spec: str, modality: str | None, window: int | None,
                      max_length: int) -> None:
    """Refuses `max_length` before anything loads where it cannot apply."""
    if max_length < 1:
        raise UsageError(f"`max_length` must be at least 1, got {max_length}")
    known = None if memory.is_memory(spec) else builtin.REGISTRY.get(spec)
    kind = modality or (known.modality if known is not None else "text")
    if window is not None or kind != "text":
        what = "sequences (`window`)" if window is not None else f"{kind} data"
        name = memory.NAME if memory.is_memory(spec) else spec
        raise UsageError(f"`max_length` cuts lines of text, and {name} is read as {what}")


def _text_rows(ds: Dataset, max_length: int | None) -> Dataset:
    """Text as the rows it trains on: lines cut to `max_length` (text.cut), with their meta."""
    if ds.modality != "text":
        if max_length is not None:
            raise UsageError(f"`max_length` cuts lines of text, and {ds.name} is "
                             f"{ds.modality} data")
        return ds
    length = text.MAX_LENGTH if max_length is None else max_length
    rows = text.cut(ds.x, length)
    meta = text.text_meta(rows)
    tokens = len(rows) * (meta["max_length"] + 1)  # what codec.encode will hold
    if tokens > text.MAX_TOKENS:
        raise DataError(f"{ds.name}: {len(rows):,} rows of up to {meta['max_length']:,} "
                        f"characters take {tokens * 8 / 2**30:.1f} GiB as tokens, over "
                        f"{text.MAX_TOKENS * 8 // 2**30} GiB; train on part of the text, or "
                        "lower `max_length` when most rows are short")
    labels = ds.labels
    if labels is not None and len(rows) != len(ds.x):  # each window keeps its line's label
        labels = np.repeat(labels, [max(1, -(-len(line) // length)) for line in ds.x])
    return replace(ds, x=rows, labels=labels, meta={**ds.meta, **meta})


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or Path(spec).suffix != ""


def split(ds: Dataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, val): a shuffled split, stratified by label when there are labels.

    Deterministic in `seed`; both parts are non-empty and keep the original order. Stratified
    means every class sends about `val_fraction` of its samples to val: each sample's key is
    its rank within its class (in shuffled order) over the class size, and the lowest keys go.
    """
    if not 0 < val_fraction < 1:
        raise UsageError(f"`val_fraction` must be between 0 and 1, got {val_fraction}")
    n = len(ds)
    if n < 2:
        raise DataError(f"{ds.name}: {n} sample(s) is too few to split into train and validation")
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    if ds.labels is None:
        val = perm[:n_val]
    else:
        labels = ds.labels[perm]
        order = np.argsort(labels, kind="stable")  # classes grouped, shuffled inside
        counts = np.bincount(labels)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - starts[labels[order]]
        key = (rank + rng.random(n)) / counts[labels]
        val = perm[np.argsort(key, kind="stable")[:n_val]]
    mask = np.zeros(n, bool)
    mask[val] = True
    return ds.subset(np.flatnonzero(~mask)), ds.subset(np.flatnonzero(mask))
