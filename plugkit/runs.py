"""A trained run, to use: plugkit.load and plugkit.train return one (`Run`).

    run = plugkit.load("runs/vae-adult")
    df = run.sample(1_000, seed=0)
    report = run.evaluate()
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plugkit import rundir
from plugkit.errors import PlugkitError, UsageError

BLOCK = 10_000  # samples per draw: what is held in memory at once, and the unit of seeding


class Run:
    """A trained run, its run.json read once: the family with chosen weights, the data split
    as training split it, and `draw`, the one way samples leave a run (`plugkit sample`,
    `plugkit eval` and `plugkit augment` all draw through it, so a seed means the same samples
    everywhere).

        run = plugkit.load("runs/vae-adult")        # or what plugkit.train returns
        df = run.sample(1_000, seed=0)               # the data's own kind: here a DataFrame
        report = run.evaluate()

    A Run is os.PathLike: wherever a run's folder is asked for, a Run does too.
    """

    def __init__(self, path: str | Path, data: Any = None) -> None:
        self.path = Path(path)
        self.record = rundir.read(self.path)
        self._given = data  # in-memory data handed back to a run trained on it
        self._models: dict[tuple[str, str], Any] = {}
        if data is not None:  # refused now, not at the first use of it
            spec = self.record["data"]
            if "memory" not in spec:
                raise UsageError(f"{self.path} was trained on {spec['spec']}, not on in-memory "
                                 "data: load it without `data`")
            from plugkit.data import memory

            memory.given_back(data, spec["memory"], self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.family_name} on {self.record['data']['spec']})"

    @property
    def family_name(self) -> str:
        return self.record["family"]

    @property
    def modality(self) -> str:
        return self.record["data"]["modality"]

    @property
    def classes(self) -> list[str] | None:
        return self.record["data"]["classes"]

    @property
    def family_class(self) -> type:
        from plugkit import plugins

        return plugins.get(self.family_name)

    @property
    def info(self) -> Any:
        from plugkit.family import DataInfo

        data = self.record["data"]
        # private as it trained: a family may build other modules for a private run (the vae's
        # fitted prior, diffusion's calibration are left out), and its weights must fit them
        return DataInfo(data["modality"], data["meta"], data["classes"], "privacy" in self.record)

    def weights_used(self, weights: str = "best") -> str:
        """"best" when asked for and the run keeps best weights (lowest validation loss),
        else "last" (the latest checkpoint)."""
        from plugkit import checkpoint

        if weights not in ("best", "last"):
            raise UsageError(f"`weights` must be best or last, got {weights!r}")
        if not (self.path / checkpoint.WEIGHTS).exists():
            raise PlugkitError(f"{self.path} has no trained weights yet (no "
                               f"{checkpoint.WEIGHTS}); train at least one epoch")
        return "best" if weights == "best" and (self.path / checkpoint.BEST).exists() \
            else "last"

    def model(self, weights: str = "best", device: str = "cpu") -> Any:
        """The trained family on `device`, with the weights `weights_used` chooses."""
        import torch

        from plugkit import checkpoint, options

        chosen = self.weights_used(weights)
        if (chosen, device) not in self._models:
            cls = self.family_class
            opts = options.build(cls.Options, options.recorded(cls.Options,
                                                               self.record["options"]), cls.name)
            family = cls(opts, self.info, torch.device(device))
            checkpoint.load_weights(self.path, family.modules(),
                                    checkpoint.BEST if chosen == "best" else None)
            self._models[chosen, device] = family
        return self._models[chosen, device]

    def settings(self, **given: Any) -> Any:
        """The family's Settings from values by name (strings are parsed: "0.8")."""
        from plugkit import options
        from plugkit.formats import tabular

        cls = self.family_class
        if given.get("where") and self.modality == "table":  # a derived column's: its parent's
            given = given | {"where": tabular.parent_where(self.info.meta.get("derived", []),
                                                           given["where"])}
        return options.build(cls.Settings, given, cls.name, "sampler setting")

    def data(self) -> Any:
        """The run's whole dataset, loaded as training loaded it: from the path recorded (any
        folder works), or the in-memory data given back to this Run, checked against the
        fingerprint recorded."""
        from plugkit import data

        spec = self.record["data"]
        source = rundir.data_spec(spec)
        if "memory" in spec:
            source = data.memory.given_back(self._given, spec["memory"], self.path)
        return data.load(source, spec["modality"], rundir.image_size(spec), spec.get("window"),
                         spec.get("max_length"))

    def split(self) -> tuple[Any, Any]:
        """(train, validation): exactly the split training used."""
        from plugkit import data

        return data.split(self.data(), self.record["val_fraction"], self.record["seed"])

    def labels(self, n: int, label: str | int | None = None, per_class: int | None = None,
               weights: str = "best") -> Any:
        """The class of each of n samples (int64 [n], in class order) for a class-conditional
        run: all of `label` (a name or an index), `per_class` of each class, or by default the
        training data's class mix; None for a run that does not sample by class."""
        import numpy as np

        classes = self.classes or []
        if label is not None and per_class is not None:
            raise UsageError("`label` and `per_class` disagree: give one of the two (all of "
                             "one class, or so many of every class)")
        if not self.model(weights).num_classes:  # the model the draw loads: loaded once
            if label is not None or per_class is not None:
                what = "`label`" if label is not None else "`per_class`"
                why = "its data has no labels" if not classes else \
                    "its model is not class-conditional (conditional=false, or its family is not)"
                raise UsageError(f"{what}: {self.path} cannot sample by class: {why}")
            return None
        if label is not None:
            return np.full(n, _class_index(label, classes), np.int64)
        if per_class is not None:
            return np.repeat(np.arange(len(classes)), per_class)
        counts = self.record["data"].get("class_counts") or [1] * len(classes)
        return np.repeat(np.arange(len(classes)), _quota(np.asarray(counts, np.float64), n))

    def draw(self, n: int, seed: int = 0, *, labels: Any = None, weights: str = "best",
             device: str = "cpu", **settings: Any) -> Iterator[Any]:
        """The n samples in blocks of BLOCK, each decoded to the data's own representation
        (plugkit.formats.codec): DataFrames, arrays or lists of strings. `labels` [n]: the
        class of each sample (see `labels`); `settings` go to the family's sampler (its
        Settings, validated before anything is drawn).

        Block k is drawn by its own generator, seeded with `seed` itself for k = 0 (so
        n <= BLOCK gives exactly one draw of n from `seed`) and with a hash of (seed, k) after
        that. A block never depends on n or on the blocks before it, so the samples depend on
        (seed, BLOCK) alone.
        """
        import torch

        from plugkit.formats import codec

        family = self.model(weights, device)
        chosen = self.settings(**settings)
        if n < 1:
            raise UsageError(f"`n` must be at least 1, got {n}")
        if labels is not None and len(labels) != n:
            raise UsageError(f"{len(labels)} labels for {n} samples")
        for k, start in enumerate(range(0, n, BLOCK)):
            generator = torch.Generator(device=family.device).manual_seed(block_seed(seed, k))
            given = None if labels is None else \
                torch.as_tensor(labels[start:start + BLOCK]).to(family.device)
            with torch.no_grad():  # a sampler that keeps its graph would hold every block
                drawn = family.sample(min(BLOCK, n - start), generator=generator,
                                      labels=given, settings=chosen)
            yield codec.decode(family.info, drawn)

    def sample(self, n: int = 64, seed: int = 0, *, label: str | int | None = None,
               per_class: int | None = None, weights: str = "best", **settings: Any) -> Any:
        """n samples in the data's own kind: a DataFrame with the original columns and dtypes
        (tables), an array in the original value range (images [n, C, H, W]: uint8 0..255 when
        the data was 8-bit (meta["bit_depth"]: image folders, integer arrays), else floats in
        [0, 1]; sequences [n, T, F]), a list of strings (text). A class-conditional run returns
        (samples, labels), labels int64 [n] indexing `classes`. Settings as for `draw`."""
        from plugkit.formats import codec

        if per_class is not None:
            n = per_class * len(self.classes or [])
        labels = self.labels(n, label, per_class, weights)
        blocks = list(self.draw(n, seed, labels=labels, weights=weights, **settings))
        samples = codec.concat(blocks)
        if self.modality == "image" and self.info.meta.get("bit_depth") == 8:
            import numpy as np

            samples = np.clip(np.round(samples * 255), 0, 255).astype(np.uint8)
        return samples if labels is None else (samples, labels)

    def evaluate(self, real: Any = None, **settings: Any) -> Any:
        """`plugkit eval` of this run (plugkit.metrics.evaluate: n, seed, target, out, weights,
        threads): how real its samples are, each measure next to its real-vs-real floor.
        `real`: the in-memory data a run trained on in memory (checked by its fingerprint)."""
        from plugkit import threads
        from plugkit.metrics import evaluate

        run = self if real is None else Run(self.path, real)
        with threads.using(settings.pop("threads", None)):
            return evaluate.evaluate(run, **settings)

    def resume(self, data: Any = None, **settings: Any) -> Run:
        """Trains this run on (`plugkit train --resume`), settings as for plugkit.train (epochs,
        max_time, progress, ...); `data`: what a run trained on in-memory data trained on."""
        from plugkit import training

        given = data if data is not None else self._given
        training.train_from_python(None, given, out=self.path, resume=True, **settings)
        return Run(self.path, given)


def block_seed(seed: int, k: int) -> int:
    import numpy as np

    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**64, k]).generate_state(1, np.uint64)[0])


def _class_index(label: str | int, classes: list[str]) -> int:
    if str(label) in classes:
        return classes.index(str(label))
    if str(label).isdigit() and int(label) < len(classes):
        return int(label)
    raise UsageError(f"`label` {label!r} is not a class of this run; classes: "
                     + ", ".join(classes))


def _quota(weights: Any, n: int) -> Any:
    """n split in proportion to weights, in whole numbers (largest remainders)."""
    import numpy as np

    exact = weights / weights.sum() * n
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[:n - counts.sum()]] += 1
    return counts
