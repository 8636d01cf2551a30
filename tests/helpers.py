"""Shared test recipe pieces: which ops ran, and relative errors against float64 references."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import plugkit.ops

NEEDS_NATIVE = pytest.mark.skipif(
    plugkit.ops.backend().active != "native",
    reason=f"needs the native core ({plugkit.ops.backend().reason})",
)


class RecordOps(TorchDispatchMode):
    """Records the name of every operator that reaches the dispatcher's Python mode."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def run_recorded(fn, *args, **kwargs):
    """(fn's result, names of the ops it dispatched)."""
    with RecordOps() as rec:
        out = fn(*args, **kwargs)
    return out, rec.names


def assert_ran(backend: str, names: set[str], op: str) -> None:
    """The native backend must have called plugkit::op; the fallback no plugkit op at all."""
    native = {n for n in names if n.startswith("plugkit.")}
    if backend == "native":
        assert f"plugkit.{op}" in native, f"native backend did not run plugkit::{op}: {names}"
    else:
        assert not native, f"torch backend ran native ops {native}"


def rel_err(actual: torch.Tensor, expected: torch.Tensor, floor: float = 1e-30) -> float:
    """Norm-relative error, with an absolute floor for values that are (nearly) zero."""
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return ((actual - expected).norm() / max(expected.norm().item(), floor)).item()


def tolerance(dtype: torch.dtype) -> float:
    relative = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3,
                torch.bfloat16: 2e-2}
    return relative[dtype]


def small_table():
    """A DataFrame with every column kind the tabular codec handles: float with gaps, int,
    string categories with gaps, bool."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 40
    income = rng.normal(50.0, 10.0, n).round(1)
    income[::7] = np.nan
    city = rng.choice(["Paris", "Rome", "Oslo"], n).astype(object)
    city[::9] = None
    return pd.DataFrame({"income": income, "age": rng.integers(18, 80, n), "city": city,
                         "member": rng.random(n) < 0.3})


def table_info():
    """DataInfo of small_table(), as the core builds it when loading the data."""
    from plugkit.data import dataset
    from plugkit.family import DataInfo

    ds = dataset.validate(dataset.Dataset("small", "table", small_table()))
    return DataInfo("table", ds.meta)


def table_batch(info):
    from plugkit.family import Batch
    from plugkit.formats import tabular

    return Batch(torch.from_numpy(tabular.encode(small_table(), info.meta["encoding"])))


def run_python(*args, cwd, pythonpath="", timeout=300):
    """`python *args` in a subprocess with only `pythonpath` added: what a user's shell runs."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tiny_run(kind: str, folder):
    """A run trained for one epoch in a second or two: kind is image (vae on digits), table
    (vae on small_table), text (lstm on words) or sequence (lstm on sine windows)."""
    from pathlib import Path

    import numpy as np

    from plugkit import training

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lstm = ["hidden=16", "embed=8", "layers=1"]
    if kind == "table":
        small_table().to_csv(folder / "people.csv", index=False)
        family, data, options = "vae", str(folder / "people.csv"), ["hidden=16"]
    elif kind == "text":
        (folder / "words.txt").write_text("\n".join(["anna", "bob", "carla", "dan"] * 8) + "\n")
        family, data, options = "lstm", str(folder / "words.txt"), lstm
    elif kind == "sequence":
        waves = np.sin(np.arange(16.0) + np.arange(40.0)[:, None])[:, :, None]  # (40, 16, 1)
        np.save(folder / "waves.npy", waves.astype(np.float32))
        family, data, options = "lstm", str(folder / "waves.npy"), lstm
    else:
        family, data, options = "vae", "digits", ["hidden=32", "latent_dim=4"]
    config = training.TrainConfig(family=family, data=data, out=folder / "run", epochs=1,
                                  batch_size=128, options=options,
                                  modality="sequence" if kind == "sequence" else None)
    return training.train(config)
