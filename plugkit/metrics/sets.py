"""What `plugkit eval` compares: synthetic samples, the real data they must resemble (train),
and real data no model saw (holdout), all cut to one size n (DESIGN.md §5).

From a run: the run's own dataset, split exactly as training split it (same seed and fraction),
so the holdout is the validation set the model never trained on; n fresh samples are drawn.
From a sample file: `--against` is the training data and `--holdout` the held-out data, else
`--against` is split in two halves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from plugkit import data, runs
from plugkit.data import Dataset
from plugkit.errors import PlugkitError, UsageError

MAX_N = 10_000  # default cap of the compared size (DESIGN.md §5)
CHUNK = 1_000  # samples drawn per call when sampling a run


@dataclass
class Sets:
    modality: str
    synthetic: Dataset
    train: Dataset
    holdout: Dataset
    meta: dict  # the real data's meta (image size, table encoding, vocabulary ...)
    source: str
    run: Path | None = None
    train_full: Dataset | None = None  # before the cut: privacy compares with every record
    holdout_full: Dataset | None = None

    @property
    def n(self) -> int:
        return len(self.synthetic)


def from_run(run_dir: Path, n: int | None, seed: int, weights: str = "best") -> Sets:
    import torch

    from plugkit import checkpoint, sampling

    record = runs.read(run_dir)
    if not (run_dir / checkpoint.WEIGHTS).exists():
        raise PlugkitError(f"{run_dir} has no trained weights yet (no {checkpoint.WEIGHTS}); "
                           "train at least one epoch")
    spec = record["data"]
    real = data.load(spec["spec"], spec["modality"], spec.get("image_size"), spec.get("window"))
    train, holdout = data.split(real, record["val_fraction"], record["seed"])
    size = _size(n, train, holdout)
    family = sampling.load(run_dir, weights=weights)
    generator = torch.Generator(device=family.device).manual_seed(seed)
    # a class-conditional model draws for the holdout's labels: the same class mix as the real
    # set it is compared with, and the labels that label accuracy checks
    labels = np.resize(holdout.labels, size) if family.num_classes else None
    drawn = [_decoded(family, generator, labels, start, min(CHUNK, size - start))
             for start in range(0, size, CHUNK)]
    synthetic = Dataset(f"samples of {run_dir}", real.modality, _concat(drawn), labels,
                        real.classes if labels is not None else None, meta=real.meta)
    return _cut(Sets(real.modality, synthetic, train, holdout, real.meta, str(run_dir), run_dir),
                size, seed)


def _decoded(family: Any, generator: Any, labels: np.ndarray | None, start: int, n: int) -> Any:
    import torch

    from plugkit.data import codec

    given = {} if labels is None else {
        "labels": torch.from_numpy(labels[start:start + n]).to(family.device)}
    return codec.decode(family.info, family.sample(n, generator=generator, **given))


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], list):
        return [item for part in parts for item in part]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import pandas as pd

    return pd.concat(parts, ignore_index=True)


def from_file(path: str, against: str | None, holdout: str | None, modality: str | None,
              n: int | None, seed: int) -> Sets:
    if against is None:
        raise UsageError("evaluating a sample file needs --against DATA (the real data)")
    if Path(path).suffix.lower() == ".png":
        raise UsageError(f"{path}: a PNG grid cannot be evaluated; sample with --out x.npz")
    real = data.load(against, modality)
    synthetic = data.load(path, real.modality)
    if holdout is None:
        train, held = data.split(real, 0.5, seed)
    else:
        train, held = real, data.load(holdout, real.modality)
        _check_like(real, held, f"--holdout {holdout}")
    _check_like(real, synthetic, path)
    size = _size(n if n is not None else len(synthetic), train, held, len(synthetic))
    return _cut(Sets(real.modality, synthetic, train, held, real.meta, path), size, seed)


def _size(n: int | None, train: Dataset, holdout: Dataset, available: int | None = None) -> int:
    """The compared size: n (default: the holdout's size, capped at MAX_N), no larger than any
    set it is cut from, since the floor compares n train records with n holdout records."""
    if n is not None and n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    wanted = n if n is not None else min(len(holdout), MAX_N)
    limits = [len(train), len(holdout)] + ([available] if available is not None else [])
    return min([wanted, *limits])


def _cut(sets: Sets, n: int, seed: int) -> Sets:
    """Every set to n records, each a random subset drawn with its own stream of `seed`."""
    rng = np.random.default_rng(seed)
    cut = {name: _subset(getattr(sets, name), n, rng)
           for name in ("synthetic", "train", "holdout")}
    return replace(sets, train_full=sets.train, holdout_full=sets.holdout, **cut)


def _subset(ds: Dataset, n: int, rng: np.random.Generator) -> Dataset:
    if len(ds) == n:
        return ds
    return ds.subset(np.sort(rng.choice(len(ds), n, replace=False)))


def _check_like(real: Dataset, other: Dataset, name: str) -> None:
    """The same kind of data as the real set: modality, image shape, columns, features."""
    if other.modality != real.modality:
        raise UsageError(f"{name} is {other.modality} data, the real data is {real.modality}")
    if real.modality in ("image", "sequence") and other.x.shape[1:] != real.x.shape[1:]:
        raise UsageError(f"{name} has {real.modality}s of shape {list(other.x.shape[1:])}, "
                         f"the real data {list(real.x.shape[1:])}")
    if real.modality == "table":
        missing = [str(c) for c in real.x.columns if c not in other.x.columns]
        extra = [str(c) for c in other.x.columns if c not in real.x.columns]
        if missing or extra:
            raise UsageError(f"{name} has other columns than the real data (missing: "
                             f"{missing}, unexpected: {extra})")
        other.x = other.x[list(real.x.columns)]  # same columns in another order is fine
