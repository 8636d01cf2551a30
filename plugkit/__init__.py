"""plugkit: plugin-based generative models with a native core.

    import plugkit
    run = plugkit.train("vae", data="digits", epochs=20, options=["latent_dim=16"])
    plugkit.sample(run, n=64, out="grid.png", seed=0)      # a file, as `plugkit sample` writes
    report = plugkit.evaluate(run)                          # as `plugkit eval`: report.measures
    images = plugkit.load(run).sample(64, generator=torch.Generator().manual_seed(0))

Importing plugkit is cheap: torch and the families load when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugkit.family import Family

from plugkit.version import __version__

__all__ = ["__version__", "evaluate", "load", "sample", "train"]


def train(family: str, data: str | None = None, **settings: Any) -> Path:
    """Trains `family` on `data` (a built-in name or a path) and returns the run's folder. The
    settings are plugkit.training.TrainConfig's, the CLI's flags with underscores: epochs,
    batch_size, out, options=["key=value"], resume, max_time, threads, ..."""
    import dataclasses

    from plugkit import training
    from plugkit.errors import UsageError

    known = [f.name for f in dataclasses.fields(training.TrainConfig)]
    unknown = [k for k in settings if k not in known or k in ("family", "data")]
    if unknown:
        raise UsageError(f"plugkit.train: unknown setting {unknown[0]!r}; settings: "
                         + ", ".join(k for k in known if k not in ("family", "data")))
    return training.train(training.TrainConfig(family=family, data=data, **settings))


def sample(run: str | Path, n: int | None = None, out: str | Path | None = None,
           seed: int = 0, **settings: Any) -> Path:
    """Writes n samples of a run to `out` (.png, .npz, .npy, .csv, .parquet or .txt, as the
    run's data allows) and returns the file: `plugkit sample` (see plugkit.sampling.sample)."""
    from plugkit import sampling, threads

    with threads.using(settings.pop("threads", None)):
        return sampling.sample(run, n, out, seed, **settings)


def evaluate(source: str | Path, **settings: Any) -> Any:
    """How real the samples of a run (or a sample file, with against=DATA) are, each measure
    next to its real-vs-real floor: `plugkit eval` (see plugkit.metrics.evaluate)."""
    from plugkit import threads
    from plugkit.metrics import evaluate as evaluation

    with threads.using(settings.pop("threads", None)):
        return evaluation.evaluate(source, **settings)


def load(run_dir: str | Path, device: str = "cpu") -> Family:
    """The trained family of a run directory, ready to sample."""
    from plugkit.sampling import load as load_run

    return load_run(run_dir, device)
