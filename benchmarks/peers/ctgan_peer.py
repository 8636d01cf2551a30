"""ctgan's TVAE or CTGAN on a CSV, with its defaults, writing samples along the way
(runs in the ctgan venv: benchmarks/requirements-ctgan.txt).

    python ctgan_peer.py tvae  DIR --epochs 300  --n 10000   # DIR/train.csv, DIR/discrete.json
    python ctgan_peer.py ctgan DIR --seconds 600 --n 10000

Both `fit`s build fresh networks on every call, so training cannot continue in chunks; the
points come from inside one `fit` instead: its epoch loop iterates `tqdm(range(epochs))`, and
the `tqdm` the module sees is replaced by a generator that, between two epochs, draws samples
from the networks as they are (the RNG streams put back afterwards) and, with a time budget,
ends the loop at the first epoch end past it. Nothing else in ctgan is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

start = time.monotonic()  # before the imports: loading torch and ctgan counts too

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from ctgan.synthesizers import ctgan as ctgan_module  # noqa: E402
from ctgan.synthesizers import tvae as tvae_module  # noqa: E402
from points import Points, same_rng  # noqa: E402

NO_EPOCH_LIMIT = 10**9  # a time budget ends training, not the epoch count


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=("tvae", "ctgan"))
    p.add_argument("dir", type=Path)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--n", type=int, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    points = Points(args.dir / args.model, start, epochs=args.epochs, seconds=args.seconds)
    table = pd.read_csv(args.dir / "train.csv")
    discrete = json.loads((args.dir / "discrete.json").read_text())
    epochs = args.epochs or NO_EPOCH_LIMIT
    if args.model == "tvae":
        model, module = tvae_module.TVAE(epochs=epochs), tvae_module
    else:
        model, module = ctgan_module.CTGAN(epochs=epochs), ctgan_module

    def save(stem: Path) -> Path:
        with same_rng():
            rows = model.sample(args.n)
        rows.to_csv(stem.with_suffix(".csv"), index=False)
        return stem.with_suffix(".csv")

    module.tqdm = lambda epochs, **_: points.loop(len(epochs), save)  # tqdm(range(epochs))
    model.fit(table, discrete)


if __name__ == "__main__":
    sys.exit(main())
