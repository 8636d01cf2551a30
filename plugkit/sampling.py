"""Sampling from a trained run into the user's format, with a sidecar JSON for traceability.

    plugkit.sampling.sample("runs/vae-digits", n=64, out="grid.png", seed=0)

Images: .png (a grid), .npz (x and, when conditional, labels) or .npy; tables: .csv or
.parquet with the data's columns and dtypes; sequences: .npz/.npy [n, T, F] in the data's
units; text: .txt, one sample per line (sampler settings such as temperature=0.8, top_k=5,
prefix="ma", or for tables where="income=>50K", pass through). The sidecar `<out>.json` records
the run, the seed and the settings, so every sample file is traceable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugkit import atomic, checkpoint, options, plugins, runs
from plugkit.data import codec
from plugkit.errors import PlugkitError, UsageError
from plugkit.family import DataInfo, Family

FORMATS = {"image": (".png", ".npz", ".npy"), "text": (".txt",), "table": (".csv", ".parquet"),
           "sequence": (".npz", ".npy")}  # the first is the default


def load(run_dir: str | Path, device: str = "cpu") -> Family:
    """The trained family of a run, weights loaded, on `device`."""
    run_dir = Path(run_dir)
    record = runs.read(run_dir)
    cls = plugins.get(record["family"])
    opts = options.parse(cls.Options, [f"{k}={v}" for k, v in record["options"].items()],
                         cls.name)
    family = cls(opts, info_of(record), torch.device(device))
    checkpoint.load_weights(run_dir, family.modules())
    return family


def info_of(record: dict) -> DataInfo:
    data = record["data"]
    return DataInfo(data["modality"], data["meta"], data["classes"])


TEXT_SETTINGS = ("temperature", "top_k", "prefix")


def sample(run_dir: str | Path, n: int, out: str | Path | None = None, seed: int = 0,
           **settings: Any) -> Path:
    """Writes n samples of a run to `out` (default: <run>/samples/samples.<the modality's first
    format>); returns it. `settings` go to the family's sampler (text: temperature, top_k,
    prefix; tables: where="COLUMN=VALUE").
    """
    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    run_dir = Path(run_dir)
    modality = runs.read(run_dir)["data"]["modality"]
    formats = FORMATS[modality]
    out = Path(out) if out is not None else run_dir / "samples" / f"samples{formats[0]}"
    if out.suffix not in formats:
        raise UsageError(f"--out must end in {', '.join(formats)} for {modality} samples, "
                         f"got {out.name!r}")
    misplaced = [k for k in settings if k in TEXT_SETTINGS and modality != "text"]
    if misplaced:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in misplaced)
        raise UsageError(f"{flags}: only for text runs, and {run_dir} is a {modality} run")
    if "where" in settings and modality != "table":
        raise UsageError(f"--where: only for table runs, and {run_dir} is a {modality} run")
    family = load(run_dir)
    generator = torch.Generator(device=family.device).manual_seed(seed)
    drawn = codec.decode(family.info, family.sample(n, generator=generator, **settings))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        WRITERS[modality](out, drawn)
        sidecar = {"run": str(run_dir), "family": family.name, "n": n, "seed": seed,
                   "settings": settings, "file": out.name}
        atomic.write_text(out.with_name(out.name + ".json"), json.dumps(sidecar, indent=2) + "\n")
    except OSError as exc:
        raise PlugkitError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _write_text(out: Path, lines: list[str]) -> None:
    """One sample per line; a sample can hold no newline (the data's lines had none)."""
    atomic.write(out, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in lines),
                                                  encoding="utf-8"))


def _write_table(out: Path, df: Any) -> None:
    if out.suffix == ".parquet":
        atomic.write(out, lambda tmp: df.to_parquet(tmp, index=False))
    else:
        atomic.write(out, lambda tmp: df.to_csv(tmp, index=False))


def _write_array(out: Path, x: np.ndarray) -> None:
    atomic.write(out, lambda tmp: _save_array(tmp, out.suffix, x))


def _write_images(out: Path, images: np.ndarray) -> None:
    if out.suffix in (".npz", ".npy"):
        _write_array(out, images)
    else:
        from PIL import Image

        grid = (grid_image(images) * 255).round().astype(np.uint8)
        mode = "L" if grid.shape[2] == 1 else "RGB"
        atomic.write(out, lambda tmp: Image.fromarray(grid.squeeze(2), mode).save(tmp, "PNG"))


def _save_array(path: Path, suffix: str, images: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: numpy would append .npz to a bare temp name
        if suffix == ".npz":
            np.savez(f, x=images)
        else:
            np.save(f, images)


WRITERS = {"image": _write_images, "text": _write_text, "table": _write_table,
           "sequence": _write_array}


def grid_image(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(n, C, H, W) in [0, 1] -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) picture."""
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiles = np.ones((rows * cols, c, h + pad, w + pad), np.float32)  # white padding
    tiles[:n, :, :h, :w] = images
    grid = tiles.reshape(rows, cols, c, h + pad, w + pad).transpose(0, 3, 1, 4, 2)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad), c)
    return np.pad(grid, ((pad, 0), (pad, 0), (0, 0)), constant_values=1.0)
