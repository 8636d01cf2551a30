"""The README's Python section, as a notebook user runs it (plugkit.train / sample / evaluate /
load), from another folder."""

import numpy as np
import pytest
import torch

import plugkit
from plugkit.errors import UsageError


def test_the_readme_python_section_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = plugkit.train("vae", data="digits", epochs=1, out="runs/nb-vae",
                        options=["hidden=32", "latent_dim=4"])
    assert (run / "model.safetensors").exists()
    grid = plugkit.sample(run, n=64, out="grid.png", seed=0)
    assert grid.exists() and grid.with_name("grid.png.json").exists()
    arrays = plugkit.sample(run, n=10, out="x.npz", seed=0)
    assert np.load(arrays)["x"].shape[0] == 10
    report = plugkit.evaluate(run)
    names = [m["name"] for m in report.measures]
    assert "Fréchet distance" in " ".join(names) or len(names) > 3
    x = plugkit.load(run).sample(8, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


def test_an_unknown_setting_is_named_with_the_valid_ones():
    with pytest.raises(UsageError, match="unknown setting 'batchsize'; settings: .*batch_size"):
        plugkit.train("vae", data="digits", batchsize=32)
