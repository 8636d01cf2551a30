"""plugkit: plugin-based generative models with a native core.

    import plugkit
    model = plugkit.train("vae", data="digits", epochs=20, options=["latent_dim=16"])
    images, labels = model.sample(64, seed=0)        # the data's own kind (plugkit.runs.Run)
    model = plugkit.train("vae", data=df, epochs=50)  # in-memory data: a DataFrame ...
    df_new = model.sample(1_000)                      # ... gives a DataFrame back
    plugkit.sample(model, n=64, out="grid.png")       # a file, as `plugkit sample` writes
    report = model.evaluate(real=df)                  # as `plugkit eval`: report.measures
    model = plugkit.load("runs/vae-digits")           # a trained run from disk

Importing plugkit is cheap: torch and the families load when first used.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugkit.runs import Run

from plugkit.version import __version__

__all__ = ["__version__", "evaluate", "load", "sample", "train"]


def train(family: str | None, data: Any = None, **settings: Any) -> Run:
    """Trains `family` on `data` and returns the trained run. data: a built-in's name, a path,
    or in memory: a pandas DataFrame (a table), a list of strings (text), a numpy array or an
    (array, labels) pair (images [N, H, W] / [N, C, H, W] / [N, H, W, C], sequences with
    modality="sequence"). In-memory data is not copied into the run, only its fingerprint:
    hand it back to evaluate or resume. The settings are plugkit.training.TrainConfig's, the
    CLI's flags with underscores: epochs, batch_size, out, options (["key=value"] or a dict:
    {"hidden": 64}), resume,
    max_time, threads, ...; progress=False silences the line printed after each epoch."""
    from plugkit import privacy, rundir, runs, training
    from plugkit.data import memory

    path = training.train_from_python(family, data, **settings)
    record = rundir.read(path)
    for note in [*privacy.unreleased_notes(record), *training.data_notes(record)]:  # as the CLI
        warnings.warn(note, stacklevel=2)
    return runs.Run(path, data if memory.is_memory(data) else None)


def sample(run: str | Path | Run, n: int | None = None, out: str | Path | None = None,
           seed: int = 0, **settings: Any) -> Path:
    """Writes n samples of a run to `out` (.png, .npz, .npy, .csv, .parquet or .txt, as the
    run's data allows) and returns the file: `plugkit sample` (see plugkit.sampling.sample).
    For the samples themselves, in memory: plugkit.load(run).sample(n)."""
    from plugkit import sampling, threads

    with threads.using(settings.pop("threads", None)):
        return sampling.sample(run, n, out, seed, **settings)


def evaluate(source: str | Path | Run, **settings: Any) -> Any:
    """How real the samples of a run (its folder, or a Run) or of a sample file (with
    against=DATA) are, each measure next to its real-vs-real floor: `plugkit eval` (see
    plugkit.metrics.evaluate). For a run trained on in-memory data, against= gives that data
    back (the object, or a file holding it)."""
    from plugkit import rundir, runs, threads
    from plugkit.metrics import evaluate as evaluation

    if not isinstance(source, runs.Run) and (Path(source) / rundir.RUN_JSON).exists():
        source = runs.Run(source)
    if isinstance(source, runs.Run) and "memory" in source.record["data"] and \
            settings.get("against") is not None:
        source = runs.Run(source.path, settings.pop("against"))
    with threads.using(settings.pop("threads", None)):
        return evaluation.evaluate(source, **settings)


def load(run_dir: str | Path, data: Any = None) -> Run:
    """A trained run from its folder: .sample(n), .evaluate(), .resume(...), .model() (the
    family). `data`: the in-memory data of a run trained on one."""
    from plugkit.runs import Run

    return Run(run_dir, data)
