"""Sampling from a trained run into the user's format, with a sidecar JSON for traceability.

    plugkit.sampling.sample("runs/vae-digits", n=64, out="grid.png", seed=0)

Images: .png (a grid), .npz (x and, when conditional, labels) or .npy. The sidecar
`<out>.json` records the run, the seed and the settings, so every sample file is traceable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugkit import atomic, checkpoint, options, plugins, runs
from plugkit.errors import PlugkitError, UsageError
from plugkit.family import DataInfo, Family

IMAGE_FORMATS = (".png", ".npz", ".npy")


def load(run_dir: str | Path, device: str = "cpu") -> Family:
    """The trained family of a run, weights loaded, on `device`."""
    run_dir = Path(run_dir)
    record = runs.read(run_dir)
    cls = plugins.get(record["family"])
    opts = options.parse(cls.Options, [f"{k}={v}" for k, v in record["options"].items()],
                         cls.name)
    info = DataInfo(record["data"]["modality"], record["data"]["meta"], record["data"]["classes"])
    family = cls(opts, info, torch.device(device))
    checkpoint.load_weights(run_dir, family.modules())
    return family


def sample(run_dir: str | Path, n: int, out: str | Path | None = None, seed: int = 0,
           **settings: Any) -> Path:
    """Writes n samples of a run to `out` (default: <run>/samples/samples.png); returns it."""
    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "samples" / "samples.png"
    if out.suffix not in IMAGE_FORMATS:
        raise UsageError(f"--out must end in {', '.join(IMAGE_FORMATS)}, got {out.name!r}")
    family = load(run_dir)
    generator = torch.Generator(device=family.device).manual_seed(seed)
    images = family.sample(n, generator=generator, **settings).cpu().numpy()  # (n, C, H, W)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_images(out, images)
        sidecar = {"run": str(run_dir), "family": family.name, "n": n, "seed": seed,
                   "settings": settings, "file": out.name}
        atomic.write_text(out.with_name(out.name + ".json"), json.dumps(sidecar, indent=2) + "\n")
    except OSError as exc:
        raise PlugkitError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _write_images(out: Path, images: np.ndarray) -> None:
    if out.suffix == ".npz":
        atomic.write(out, lambda tmp: np.savez(open(tmp, "wb"), x=images))
    elif out.suffix == ".npy":
        atomic.write(out, lambda tmp: np.save(open(tmp, "wb"), images))
    else:
        from PIL import Image

        grid = (grid_image(images) * 255).round().astype(np.uint8)
        mode = "L" if grid.shape[2] == 1 else "RGB"
        atomic.write(out, lambda tmp: Image.fromarray(grid.squeeze(2), mode).save(tmp, "PNG"))


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
