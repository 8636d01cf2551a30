"""Data loading: `--data` (a built-in dataset name or a path) to a validated Dataset.

    ds = load("digits")                     # built-in, see available_datasets()
    ds = load("faces/", image_size=32)      # a folder of images, sub-folders = classes
    train, val = split(ds, val_fraction=0.1, seed=0)

Bad input raises DataError (exit 1) or UsageError (exit 2) with one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plugkit.data import builtin
from plugkit.data.builtin import available_datasets
from plugkit.data.dataset import MODALITIES, DataError, Dataset, check_modality, validate
from plugkit.errors import UsageError

__all__ = ["MODALITIES", "DataError", "Dataset", "available_datasets", "load", "split"]


def load(spec: str, modality: str | None = None, image_size: int | None = None,
         window: int | None = None) -> Dataset:
    """The dataset `spec` names: a built-in (see available_datasets()) or a file/folder path;
    with `window`, every window of that many steps of the long series it holds."""
    if window is not None:
        if modality not in (None, "sequence"):
            raise UsageError(f"--window makes sequences, not {modality} data")
        from plugkit.data.windows import not_a_series, windows

        known = builtin.REGISTRY.get(spec)  # refused before it is loaded (or found missing)
        if known is not None and known.modality in ("image", "text"):
            raise not_a_series(spec, f"{known.modality} data")
        return windows(load(spec, None, image_size), window)
    check_modality(modality)
    if image_size is not None and image_size < 1:
        raise UsageError(f"image size must be a positive integer, got {image_size}")
    if spec in builtin.REGISTRY:
        return validate(builtin.load(spec, modality, image_size))
    path = Path(spec).expanduser()
    if not path.exists() and not _looks_like_path(spec):
        names = ", ".join(builtin.REGISTRY)
        raise UsageError(f"unknown dataset {spec!r}; built-in: {names} (see `plugkit datasets`),"
                         " or give a path to a folder of images or a .npy/.npz/.csv/.parquet/"
                         ".txt file")
    from plugkit.data.readers import read_path

    return validate(read_path(path, modality, image_size))


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or Path(spec).suffix != ""


def split(ds: Dataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, val): a shuffled split, stratified by label when there are labels.

    Deterministic in `seed`; both parts are non-empty and keep the original order. Stratified
    means every class sends about `val_fraction` of its samples to val: each sample's key is
    its rank within its class (in shuffled order) over the class size, and the lowest keys go.
    """
    if not 0 < val_fraction < 1:
        raise UsageError(f"validation fraction must be between 0 and 1, got {val_fraction}")
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
