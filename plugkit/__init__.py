"""plugkit: plugin-based generative models with a native core.

    import plugkit
    run = plugkit.train("vae", data="digits", epochs=20, options=["latent_dim=16"])
    images = plugkit.load(run).sample(64, generator=torch.Generator().manual_seed(0))

Importing plugkit is cheap: torch and the families load when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugkit.family import Family

__version__ = "0.1.0"


def train(family: str, data: str | None = None, **config: Any) -> Path:
    """Trains `family` (see plugkit.training.TrainConfig for the settings); returns the run."""
    from plugkit.training import TrainConfig
    from plugkit.training import train as run

    return run(TrainConfig(family=family, data=data, **config))


def load(run_dir: str | Path, device: str = "cpu") -> Family:
    """The trained family of a run directory, ready to sample."""
    from plugkit.sampling import load as load_run

    return load_run(run_dir, device)
