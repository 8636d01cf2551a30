"""Many images as one picture, made for a person to look at: `plugkit sample --out x.png`,
the figures of `plugkit eval`, a notebook: grayscale (mode L) or RGB like the data, 2 px of
white between tiles, and small images enlarged by nearest neighbour (each pixel a sharp square)
by the smallest whole factor that makes a tile at least TILE_MIN = 64 px on its longer side:
8x8 digits x8, 28x28 x3, 64 px and more x1. A picture that would exceed GRID_SIDE_MAX = 4096 px
a side gets a smaller factor, never below 1 (`grid_scale`).
"""

from __future__ import annotations

import math

import numpy as np

TILE_MIN = 64  # px: the smallest factor that makes a tile's longer side at least this
GRID_SIDE_MAX = 4096  # px: ... lowered while the picture would be wider or taller than this
PAD = 2  # px of white between tiles and around them, after enlarging


def grid_scale(h: int, w: int, rows: int, cols: int, pad: int = PAD) -> int:
    """The factor grid_image enlarges h x w tiles by in a rows x cols grid: the smallest whole
    number that makes max(h, w) * factor >= TILE_MIN (8x8 digits: 8, 28x28: 3, 64 and more:
    1), lowered while a side of the picture would exceed GRID_SIDE_MAX px; never below 1."""
    scale = max(1, math.ceil(TILE_MIN / max(h, w)))
    while scale > 1 and max(rows * (h * scale + pad), cols * (w * scale + pad)) + pad > \
            GRID_SIDE_MAX:
        scale -= 1
    return scale


def grid_image(images: np.ndarray, pad: int = PAD, cols: int | None = None,
               scale: int | None = None) -> np.ndarray:
    """(n, C, H, W) floats in [0, 1] or uint8 -> one (rows*(H*s+pad)+pad, cols*(W*s+pad)+pad,
    C) picture of the same dtype on white, row by row: each tile enlarged s times by nearest
    neighbour (scale; default grid_scale's rule); cols: default the square root of n."""
    n, c, h, w = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    s = scale or grid_scale(h, w, rows, cols, pad)
    images = images.repeat(s, axis=2).repeat(s, axis=3)  # (n, C, H*s, W*s)
    h, w = h * s, w * s
    white = 255 if images.dtype == np.uint8 else 1.0
    tiles = np.full((rows * cols, c, h + pad, w + pad), white, images.dtype)
    tiles[:n, :, :h, :w] = images
    grid = tiles.reshape(rows, cols, c, h + pad, w + pad).transpose(0, 3, 1, 4, 2)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad), c)
    return np.pad(grid, ((pad, 0), (pad, 0), (0, 0)), constant_values=white)
