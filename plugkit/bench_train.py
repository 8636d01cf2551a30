"""How much the training loop costs: plugkit.training.train against a bare hand-written loop
that calls the same family's train_step on the same batches, side by side in one process."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from plugkit import data, options, plugins
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec
from plugkit.training import TrainConfig, train


def _bare_loop(family_name: str, dataset: str, epochs: int, batch_size: int, opts: list[str]):
    start = time.perf_counter()  # like plugkit train: loading and building count too
    cls = plugins.get(family_name)
    ds = data.load(dataset)
    train_ds, _ = data.split(ds, 0.1, 0)
    x, y = codec.encode(train_ds)  # what the trainer feeds
    torch.manual_seed(0)
    opts = options.with_defaults(cls.modality_options.get(ds.modality, {}), opts)  # as train
    family = cls(options.parse(cls.Options, opts, cls.name),
                 DataInfo(ds.modality, ds.meta, ds.classes), torch.device("cpu"))
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), batch_size):
            rows = order[i:i + batch_size]
            family.train_step(Batch(x[rows], None if y is None else y[rows]))
    return time.perf_counter() - start


def run(family: str = "vae", dataset: str = "digits", epochs: int = 5, batch_size: int = 64,
        opts: tuple[str, ...] = (), repeats: int = 3) -> dict:
    """Median seconds of both loops over `repeats` alternating runs, and their ratio."""
    bare, core = [], []
    for _ in range(repeats):
        bare.append(_bare_loop(family, dataset, epochs, batch_size, list(opts)))
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(family=family, data=dataset, out=Path(tmp) / "run",
                                 epochs=epochs, batch_size=batch_size, options=list(opts),
                                 device="cpu")
            start = time.perf_counter()
            train(config)
            core.append(time.perf_counter() - start)
    bare_s, core_s = sorted(bare)[repeats // 2], sorted(core)[repeats // 2]
    return {"family": family, "data": dataset, "epochs": epochs, "batch_size": batch_size,
            "hand_written_s": bare_s, "plugkit_s": core_s, "overhead": core_s / bare_s - 1}
