"""What `plugkit eval` compares: synthetic samples, the real data they must resemble (train),
and real data no model saw (holdout), and how.

From a run: the run's own dataset, split exactly as training split it (same seed and fraction),
so the holdout is the validation set the model never trained on; n fresh samples are drawn.
From a sample file: `--against` is the training data and `--holdout` the held-out data, else
`--against` is split in two halves.
A dataset that comes with its own test part (meta["holdout"], e.g. adult's test file) is judged
on that part in both cases: it is what the field compares on, and no run trained on it.

Two designs, chosen by the size of the holdout:

- holdout (1,000 held-out records or more): one comparison. Each measure compares the held-out
  records with as many samples, its floor the same held-out records with as many training
  records: all cut to m = min(n, holdout, train) records.
- pooled (fewer): the holdout alone is too small to measure with (a 10% split of a 344-row
  table holds 34 rows), so every real record takes part. Each of REPEATS comparisons splits
  the real records (training and held-out) at random into two disjoint halves of m records,
  a reference and a floor side, and draws m samples; the figures are the mean and standard
  deviation over the repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plugkit import data
from plugkit.data import Dataset, windows
from plugkit.errors import UsageError
from plugkit.formats import codec

MAX_N = 10_000  # default cap of the compared size (time grows with it); privacy's cap on samples
SMALL = 1_000  # fewer held-out records than this: the pooled design
REPEATS = 5  # comparisons of the pooled design
MAX_HALF = 1_000  # records per side of one pooled comparison (bounds the time on ~10k rows)
POOLED_N = 2_000  # default samples drawn in the pooled design: all real records, up to this


@dataclass
class Comparison:
    """Rows of one comparison, each of `Sets.compared` records: the measure is
    f(reference, synthetic), its floor f(reference, real)."""

    reference: np.ndarray  # rows of the real records (training first, then held-out)
    synthetic: np.ndarray  # rows of Sets.synthetic
    real: np.ndarray  # rows of the real records, none of them in `reference`


@dataclass
class Sets:
    modality: str
    synthetic: Dataset  # every sample: n
    train: Dataset  # every training record
    holdout: Dataset  # every held-out record
    meta: dict  # the real data's meta (image size, table encoding, vocabulary ...)
    source: str
    run: Path | None = None
    pooled: bool = False  # the design (module docstring)
    compared: int = 0  # records per side of each comparison
    notes: list[str] = field(default_factory=list)  # what a reader must know about the sizes
    family: Any = None  # a run's trained family, as the samples were drawn from it
    # where each real record (training first, then held-out) starts in its series, when the
    # records are windows of one series split into both (data.windows.starts), else None
    starts: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.synthetic)

    @property
    def repeats(self) -> int:
        return REPEATS if self.pooled else 1

    @property
    def real_size(self) -> int:
        return len(self.train) + len(self.holdout)

    def comparisons(self, seed: int) -> list[Comparison]:
        """The rows each comparison takes, deterministic in `seed`."""
        m, n_train = self.compared, len(self.train)
        if not self.pooled:  # the subsets (and random stream) of the single-split design
            rng = np.random.default_rng(seed)
            synthetic, train = _pick(self.n, m, rng), _pick(n_train, m, rng)
            return [Comparison(_pick(len(self.holdout), m, rng) + n_train, synthetic, train)]
        out = []
        for repeat in range(REPEATS):
            rng = np.random.default_rng([seed, repeat])
            order = rng.permutation(self.real_size)
            out.append(Comparison(np.sort(order[:m]), _pick(self.n, m, rng),
                                  np.sort(order[m:2 * m])))
        return out

    def reference_rows(self) -> np.ndarray:
        """The real records the samples are compared with: all of them when pooled, else the
        held-out ones (figures show these)."""
        return np.arange(0 if self.pooled else len(self.train), self.real_size)

    def real_x(self, rows: np.ndarray) -> Any:
        """The records at `rows` of the real data (training records first, then held-out)."""
        n_train = len(self.train)
        parts = [_take(self.train.x, rows[rows < n_train]),
                 _take(self.holdout.x, rows[rows >= n_train] - n_train)]
        return codec.concat([p for p in parts if len(p)] or parts[:1])

    def synthetic_x(self, rows: np.ndarray) -> Any:
        return _take(self.synthetic.x, rows)

    def starts_of(self, rows: np.ndarray) -> np.ndarray | None:
        """Where the real records at `rows` start in their series (None: not windows)."""
        return None if self.starts is None else self.starts[rows]


def from_run(run: Any, n: int | None, seed: int, weights: str = "best",
             settings: dict | None = None) -> Sets:
    """A trained run's (plugkit.runs.Run) data split as training split it, and samples drawn
    as `plugkit sample --seed` draws them (Run.draw), with the sampler `settings`."""
    family = run.model(weights)  # before loading the data: a run without weights fails fast
    train, holdout = run.split()
    holdout = _declared_holdout(train) or holdout
    pooled, size, compared = _design(len(train), len(holdout), n)
    # a class-conditional model draws for the class mix of the real records it is compared
    # with, and these are the labels that label accuracy checks
    labels = _label_mix(train, holdout, pooled, size, seed) if family.num_classes else None
    drawn = codec.concat(list(run.draw(size, seed, labels=labels, weights=weights,
                                       **(settings or {}))))
    synthetic = Dataset(f"samples of {run.path}", train.modality, drawn, labels,
                        train.classes if labels is not None else None, meta=train.meta)
    sets = Sets(train.modality, synthetic, train, holdout, train.meta, str(run.path), run.path,
                pooled, compared, family=family, starts=_starts(train, holdout))
    sets.notes = _notes(sets, n)
    return sets


def _starts(train: Dataset, holdout: Dataset) -> np.ndarray | None:
    """Sets.starts of a training part and a held-out part cut from one dataset (data.split);
    None for any other pair (a declared test part, a holdout file: their own series)."""
    if train.modality != "sequence" or train.rows is None or holdout.rows is None:
        return None
    parts = [windows.starts(part) for part in (train, holdout)]
    return None if parts[0] is None or parts[1] is None else np.concatenate(parts)


def _declared_holdout(real: Dataset) -> Dataset | None:
    """The test part a built-in declares for itself (its meta["holdout"]), else None."""
    name = real.meta.get("holdout")
    if name is None:
        return None
    held = data.load(name, real.modality)
    _check_like(real, held, f"{real.name}'s test part {name}")
    return held


def _label_mix(train: Dataset, holdout: Dataset, pooled: bool, size: int,
               seed: int) -> np.ndarray:
    if not pooled:
        return np.resize(holdout.labels, size)
    both = np.concatenate([train.labels, holdout.labels])
    return np.resize(np.random.default_rng(seed).permutation(both), size)


def from_file(path: str, against: str | None, holdout: str | None, modality: str | None,
              n: int | None, seed: int, window: int | None = None) -> Sets:
    if against is None:
        raise UsageError("evaluating a sample file needs `against` DATA (the real data)")
    if Path(path).suffix.lower() == ".png":
        raise UsageError(f"{path}: a PNG grid cannot be evaluated; sample with `out` x.npz")
    real = data.load(against, modality, window=window)
    synthetic = data.load(path, real.modality)
    declared = _declared_holdout(real) if holdout is None else None
    if declared is not None:
        train, held = real, declared
    elif holdout is None:
        train, held = data.split(real, 0.5, seed)
    else:
        train, held = real, data.load(holdout, real.modality, window=window)
        _check_like(real, held, f"`holdout` {holdout}")
    _check_like(real, synthetic, path)
    pooled, size, compared = _design(len(train), len(held), n, len(synthetic))
    if size < len(synthetic):
        synthetic = synthetic.subset(_pick(len(synthetic), size, np.random.default_rng(seed)))
    sets = Sets(real.modality, synthetic, train, held, real.meta, path, None, pooled, compared,
                starts=_starts(train, held))
    sets.notes = _notes(sets, n, available=len(synthetic) if n and n > size else None)
    return sets


def _design(n_train: int, n_holdout: int, n: int | None,
            available: int | None = None) -> tuple[bool, int, int]:
    """(pooled, samples used, records per side of a comparison). n defaults to the holdout's
    size (capped at MAX_N) when it is large enough, else to every real record (capped at
    POOLED_N); a sample file gives at most what it holds."""
    if n is not None and n < 1:
        raise UsageError(f"`n` must be at least 1, got {n}")
    pooled = n_holdout < SMALL
    total = n_train + n_holdout
    if n is None:
        n = available if available is not None else \
            min(total, POOLED_N) if pooled else min(n_holdout, MAX_N)
    if available is not None:
        n = min(n, available)
    compared = min(n, total // 2, MAX_HALF) if pooled else min(n, n_train, n_holdout)
    return pooled, n, compared


def _notes(c: Sets, asked: int | None, available: int | None = None) -> list[str]:
    m, n = c.compared, c.n
    notes = []
    if c.meta.get("holdout"):
        notes.append(f"held out: {c.meta['holdout']} ({len(c.holdout):,} records), the test "
                     "part that comes with the data; no run trains on it")
    if available is not None:
        notes.append(f"{asked:,} samples were asked for, more than the file holds: all "
                     f"{available:,} are used")
    if c.pooled:
        notes.append(
            f"{len(c.holdout):,} held-out records are too few to measure with alone (under "
            f"{SMALL:,}): each of {REPEATS} repeats compares {m:,} samples and {m:,} real "
            f"records with {m:,} other real records, drawn from all {c.real_size:,} "
            f"({len(c.train):,} training, {len(c.holdout):,} held out); "
            "± is the standard deviation over the repeats")
        if n > m:
            notes.append(f"{n:,} samples: each repeat compares a different {m:,} of them "
                         f"(at most half the real records, and at most {MAX_HALF:,})")
    elif n > m:
        notes.append(f"{n:,} samples: the measures compare {m:,} of them with as many "
                     f"held-out and training records (the smaller set's size)")
    if n > MAX_N:
        notes.append(f"privacy measures use {MAX_N:,} of the {n:,} samples")
    return notes


def _pick(size: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """m sorted rows of `size`, all of them (and no draw) when m == size."""
    return np.arange(size) if size == m else np.sort(rng.choice(size, m, replace=False))


def _take(records: Any, rows: np.ndarray) -> Any:
    if hasattr(records, "iloc"):
        return records.iloc[rows].reset_index(drop=True)
    if isinstance(records, list):
        return [records[i] for i in rows]
    return records[rows]


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
