"""synthcity's TabDDPM plugin (`ddpm`) on a CSV, with its defaults, writing samples along the
way (runs in the synthcity venv: benchmarks/requirements-synthcity.txt).

    python synthcity_peer.py DIR --seconds 600 --n 10000   # DIR/train.csv

The table goes in as a user hands it to synthcity: a DataFrame, strings and missing cells as
read, every plugin option at its default (1,000 epochs of 1,024 rows, 1,000 diffusion steps, a
learning rate falling linearly to 0 over the 1,000 epochs). Its epoch loop iterates
`trange(n_iter)`; the `trange` the module sees is replaced by one whose iterator, between two
epochs, draws samples through the plugin's own `generate` (the RNG streams put back
afterwards) and ends the loop at the first epoch end past the time budget. Nothing else in
synthcity is touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

start = time.monotonic()  # before the imports: loading torch and synthcity counts too

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from points import Points, same_rng  # noqa: E402
from synthcity.plugins import Plugins  # noqa: E402
from synthcity.plugins.core.models import tabular_ddpm  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir", type=Path)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--n", type=int, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    points = Points(args.dir / "tabddpm", start, seconds=args.seconds)
    table = pd.read_csv(args.dir / "train.csv")
    plugin = Plugins().get("ddpm")

    def save(stem: Path) -> Path:
        # generate() refuses before fit() returns; the networks are usable at any epoch end
        fitted, plugin.fitted = plugin.fitted, True
        try:
            with same_rng(), torch.no_grad():
                rows = plugin.generate(count=args.n).dataframe()
        finally:
            plugin.fitted = fitted
        rows.to_csv(stem.with_suffix(".csv"), index=False)
        return stem.with_suffix(".csv")

    class EpochLoop:
        """What `trange(n_iter, ...)` gives the loop: its epochs with the points in them, and
        `set_postfix` (the progress bar's, a no-op here)."""

        def __init__(self, epochs: int, **_) -> None:
            self.epochs = epochs

        def __iter__(self):
            return points.loop(self.epochs, save)

        def set_postfix(self, **_) -> None:
            pass

    tabular_ddpm.trange = EpochLoop
    plugin.fit(table)


if __name__ == "__main__":
    sys.exit(main())
