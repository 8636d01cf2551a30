"""Images: a folder of files (Pillow) or an array, to float32 [N, C, H, W] in [0, 1].

Grayscale stays one channel, anything with colour (RGB, RGBA, palette) becomes RGB, and a
folder that mixes both becomes RGB. Sizes: the images' own size when they all
agree and it is at most 64, else a square `image_size`, reached by scaling the short side and
cropping the centre. Without `image_size` the square's side is the images' median short side,
to the nearest multiple of 4 (what conv nets need), at most 64: a folder of 20-40 px crops
trains at their size, not blown up to 64 at four times the cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plugkit.data.dataset import DataError, Dataset

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
DEFAULT_SIZE = 64
_GRAY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def read_folder(root: Path, image_size: int | None) -> Dataset:
    files, labels, classes = _list(root)
    from PIL import Image

    probed = [_probe(Image, f) for f in files]  # (mode, (width, height)), headers only
    channels = 1 if all(mode in _GRAY for mode, _ in probed) else 3
    sizes = {size for _, size in probed}
    if image_size is None and len(sizes) == 1 and max(next(iter(sizes))) <= DEFAULT_SIZE:
        width, height = next(iter(sizes))
    else:
        width = height = image_size or _common_side([size for _, size in probed])
    x = np.empty((len(files), height, width, channels), np.uint8)
    for i, f in enumerate(files):
        x[i] = _pixels(Image, f, channels, (width, height))
    x = (x.transpose(0, 3, 1, 2) / np.float32(255)).astype(np.float32)
    return Dataset(str(root), "image", x, labels, classes, meta={"bit_depth": 8})


def _common_side(sizes: list[tuple[int, int]]) -> int:
    """The median short side of the images, to the nearest multiple of 4, in [4, 64]."""
    short = float(np.median([min(size) for size in sizes]))
    return int(min(max(4 * int(short / 4 + 0.5), 4), DEFAULT_SIZE))


def _list(root: Path) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Image files, and labels from sub-folder names when the images sit in sub-folders."""
    top = sorted(p for p in root.iterdir() if _is_image(p))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    nested = {d.name: sorted(p for p in d.rglob("*") if _is_image(p)) for d in folders}
    nested = {name: found for name, found in nested.items() if found}
    if top and nested:
        raise DataError(f"{root}: images both at the top level and in sub-folders; put every "
                        "image in a class sub-folder, or none")
    if top:
        return top, None, None
    if not nested:
        exts = ", ".join(sorted(EXTENSIONS))
        raise DataError(f"{root}: empty (no images with extension {exts})")
    classes = sorted(nested)
    files = [f for c in classes for f in nested[c]]
    labels = np.repeat(np.arange(len(classes)), [len(nested[c]) for c in classes])
    return files, labels, classes


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in EXTENSIONS and not p.name.startswith(".") and p.is_file()


def _probe(Image, f: Path) -> tuple[str, tuple[int, int]]:
    try:
        with Image.open(f) as im:
            return im.mode, im.size
    except Exception as exc:  # UnidentifiedImageError, OSError, ...
        raise DataError(f"{f}: not an image Pillow can read ({_why(exc)})") from None


def _pixels(Image, f: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import ImageOps

    try:
        with Image.open(f) as raw:
            im = raw.convert("L" if channels == 1 else "RGB")
        if im.size != size:
            im = ImageOps.fit(im, size, method=Image.Resampling.LANCZOS)
        return np.asarray(im).reshape(size[1], size[0], channels)
    except Exception as exc:  # truncated or corrupt pixel data shows up only on decode
        raise DataError(f"{f}: cannot decode image ({_why(exc)})") from None


def _why(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def from_array(x: np.ndarray, source: str) -> np.ndarray:
    """[N, H, W], [N, C, H, W] or [N, H, W, C] (C = 1 or 3) to float32 [N, C, H, W] in [0, 1].

    uint8 and values within [0, 255] are divided by 255; floats already in [0, 1] are kept.
    """
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{source}: images must be [N, H, W], [N, C, H, W] or [N, H, W, C] "
                        f"with C = 1 or 3, got shape {list(x.shape)}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{source}: image data contains NaN or inf")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise DataError(f"{source}: image values must lie in [0, 1] or [0, 255], "
                        f"got [{lo:g}, {hi:g}]")
    return x / np.float32(255) if hi > 1 else x


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """[N, C, H, W] to [N, C, size, size]: scale the short side, crop the centre (antialiased)."""
    if x.shape[2] == x.shape[3] == size:
        return x
    import torch
    import torch.nn.functional as F

    short = min(x.shape[2:])
    h, w = round(x.shape[2] * size / short), round(x.shape[3] * size / short)
    t = F.interpolate(torch.from_numpy(x), size=(max(h, size), max(w, size)), mode="bilinear",
                      antialias=True, align_corners=False)
    top, left = (t.shape[2] - size) // 2, (t.shape[3] - size) // 2
    return t[:, :, top:top + size, left:left + size].clamp(0, 1).numpy().copy()
