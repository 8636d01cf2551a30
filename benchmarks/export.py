"""The training part of a built-in dataset, as files a peer reads (run in plugkit's venv).

    python benchmarks/export.py adult OUT      # OUT/train.csv, OUT/discrete.json
    python benchmarks/export.py mnist-5k OUT   # OUT/train.npz: x [N, 1, 28, 28] in [0, 1], labels
    python benchmarks/export.py names OUT      # OUT/train.txt, one name a line

Exported from plugkit.data.load(NAME): exactly what `plugkit train --data NAME` trains on
(a run holds out 10% of it for validation; a peer gets all of it and uses it its own way).
Also OUT/protocol.json: how many samples `plugkit eval FILE --against NAME` compares by
default (its --n), which every model then draws.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from plugkit import data
from plugkit.metrics import sets


def export(name: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ds = data.load(name)
    if ds.modality == "table":
        ds.x.to_csv(out / "train.csv", index=False)
        # the columns a peer must treat as categories (plugkit's own reading of the table)
        kinds = ds.meta["columns"]
        discrete = [c for c in ds.x.columns if kinds[c] != "numeric"]
        (out / "discrete.json").write_text(json.dumps(discrete))
    elif ds.modality == "image":
        np.savez(out / "train.npz", x=np.asarray(ds.x, np.float32), labels=ds.labels)
    elif ds.modality == "text":
        (out / "train.txt").write_text("".join(f"{line}\n" for line in ds.x))
    else:
        raise SystemExit(f"export: {name} is {ds.modality} data; no peer takes it")
    held = heldout(ds)
    n = sets._design(len(ds), len(held), None)[1]  # eval's own default --n for this holdout
    (out / "protocol.json").write_text(json.dumps(
        {"n": n, "holdout": ds.meta.get("holdout"), "holdout_size": len(held)}))


def heldout(ds: data.Dataset) -> data.Dataset:
    """What `plugkit eval FILE --against NAME` holds out: the test part the dataset declares,
    else (before it declares one) half of the data, split as eval splits it."""
    if ds.meta.get("holdout"):
        return data.load(ds.meta["holdout"], ds.modality)
    print(f"warning: {ds.name} declares no held-out test part; eval (and the benchmark) "
          "hold out half of the training data instead, which every model trained on",
          file=sys.stderr)
    return data.split(ds, 0.5, 0)[1]


if __name__ == "__main__":
    export(sys.argv[1], Path(sys.argv[2]))
