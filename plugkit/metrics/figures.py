"""The report's pictures: real next to synthetic, in the same axes, for every modality.

Each function returns a matplotlib Figure (Agg backend: no display needed). Real data is always
blue and synthetic orange, so a reader learns the code once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to PNG bytes, never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REAL, SYNTHETIC = "#1f77b4", "#ff7f0e"


def image_grids(real: np.ndarray, synthetic: np.ndarray, n: int = 64,
                real_title: str = "real") -> Any:
    """Two grids of up to n images (N, C, H, W) in [0, 1]: real left, synthetic right."""
    from plugkit.formats.grid import grid_image

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    for ax, images, title in zip(axes, (real, synthetic), (real_title, "synthetic"),
                                 strict=True):
        grid = grid_image(images[:n])  # (rows, cols, C)
        ax.imshow(grid.squeeze(2) if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    return fig


def embedding(real: np.ndarray, synthetic: np.ndarray, title: str) -> Any:
    """Both sets projected on the first two principal axes of the real one: overlapping clouds
    mean the synthetic data covers the real data's main directions of variation."""
    mean = real.mean(0)
    _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
    axes2 = vt[:2].T  # (d, 2)
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for points, colour, label in ((real, REAL, "real"), (synthetic, SYNTHETIC, "synthetic")):
        xy = (points - mean) @ axes2
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.4, c=colour, label=label, linewidths=0)
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    ax.legend(markerscale=3)
    return fig


def histograms(real: Any, synthetic: Any, columns: list[str], kinds: dict[str, str],
               titles: list[str] | None = None) -> Any:
    """One panel per column (DataFrames), in the order given: overlaid histograms for numeric
    columns, side by side bars of the most common categories for categorical ones."""
    cols = min(len(columns), 4)
    rows = -(-len(columns) // cols)
    tall = 2.6 if titles is None else 2.9  # room for two-line titles
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, tall * rows), squeeze=False)
    for ax, name, title in zip(axes.flat, columns, titles or columns, strict=False):
        if kinds[name] == "numeric":
            _overlaid(ax, real[name].dropna().to_numpy(float),
                      synthetic[name].dropna().to_numpy(float))
        else:
            _bars(ax, _labels(real[name]), _labels(synthetic[name]))
        ax.set_title(title, fontsize=10)
    for ax in axes.flat[len(columns):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def associations(real: Any, synthetic: Any, kinds: dict[str, str]) -> Any:
    """The pairwise association matrices of two tables (plugkit.metrics.associations: Pearson,
    Cramér's V, correlation ratio) side by side, and their absolute difference."""
    from plugkit.metrics.associations import association_matrix

    names = list(kinds)
    a = association_matrix(real[names], kinds).to_numpy()
    b = association_matrix(synthetic[names], kinds).to_numpy()
    side = min(max(3.2, 0.32 * len(names) + 1.5), 14.0)
    fig, axes = plt.subplots(1, 3, figsize=(3 * side, side))
    for ax, matrix, title, cmap, low in ((axes[0], a, "real", "RdBu_r", -1),
                                         (axes[1], b, "synthetic", "RdBu_r", -1),
                                         (axes[2], np.abs(a - b), "|real − synthetic|", "Reds",
                                          0)):
        image = ax.imshow(matrix, cmap=cmap, vmin=low, vmax=1)
        ax.set_title(title)
        size = 8 if len(names) <= 20 else 6
        ax.set_xticks(range(len(names)), [str(n)[:18] for n in names], rotation=90,
                      fontsize=size)
        ax.set_yticks(range(len(names)), [str(n)[:18] for n in names], fontsize=size)
        if len(names) <= 10:  # room to write the values
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def _labels(column: Any) -> list[str]:
    """Categories as text, missing ones as "missing": astype(str) keeps NaN in pandas' str
    dtype, and a NaN label breaks the bar chart."""
    import pandas as pd

    return ["missing" if pd.isna(v) else str(v) for v in column]


def _overlaid(ax: Any, real: np.ndarray, synthetic: np.ndarray, bins: int = 30) -> None:
    both = np.concatenate([real, synthetic])
    edges = np.histogram_bin_edges(both[np.isfinite(both)], bins=bins)
    ax.hist(real, edges, density=True, alpha=0.5, color=REAL, label="real")
    ax.hist(synthetic, edges, density=True, alpha=0.5, color=SYNTHETIC, label="synthetic")


def _bars(ax: Any, real: Any, synthetic: Any, top: int = 10) -> None:
    shares_r = Counter(real)
    shares_s = Counter(synthetic)
    names = [k for k, _ in shares_r.most_common(top)]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [shares_r[k] / len(real) for k in names], 0.4, color=REAL)
    ax.bar(x + 0.2, [shares_s[k] / max(len(synthetic), 1) for k in names], 0.4, color=SYNTHETIC)
    ax.set_xticks(x, [k[:10] for k in names], rotation=60, fontsize=7)


def text_distributions(real: list[str], synthetic: list[str]) -> Any:
    """Character frequencies (the 30 most common in the real text) and line lengths."""
    fig, (chars, lengths) = plt.subplots(1, 2, figsize=(11, 3.4))
    _bars(chars, list("".join(real)), list("".join(synthetic)), top=30)
    chars.set_title("characters")
    _overlaid(lengths, np.array([len(s) for s in real], float),
              np.array([len(s) for s in synthetic], float), bins=min(40, max(
                  len({len(s) for s in real}), 2)))
    lengths.set_title("line length")
    lengths.legend()
    return fig


def sequences(real: np.ndarray, synthetic: np.ndarray, lags: int = 20, show: int = 6) -> Any:
    """Feature 0 of a few sequences each, the pooled value histogram and the mean
    autocorrelation function, real against synthetic."""
    fig, (lines, values, acf) = plt.subplots(1, 3, figsize=(13, 3.4))
    for data, colour in ((real, REAL), (synthetic, SYNTHETIC)):
        lines.plot(data[:show, :, 0].T, color=colour, alpha=0.7, lw=1)
        acf.plot(_mean_acf(data[:, :, 0], min(lags, data.shape[1] - 1)), color=colour, marker=".")
    _overlaid(values, real[..., 0].ravel(), synthetic[..., 0].ravel())
    lines.set_title("sequences (feature 0)")
    values.set_title("values")
    acf.set(title="mean autocorrelation", xlabel="lag")
    return fig


def _mean_acf(x: np.ndarray, lags: int) -> np.ndarray:
    x = x - x.mean(1, keepdims=True)  # (N, T)
    var = (x * x).sum(1) + 1e-12
    return np.array([((x[:, k:] * x[:, :x.shape[1] - k]).sum(1) / var).mean()
                     for k in range(lags + 1)])


def loss_curves(rows: list[dict]) -> Any:
    """Every logged number of a run's metrics.jsonl against the epoch."""
    keys = [k for k in rows[0] if k not in ("epoch", "step", "samples_per_s", "threads")
            and isinstance(rows[0][k], int | float)]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = [r["epoch"] for r in rows]
    for key in keys:
        ax.plot(epochs, [r.get(key, np.nan) for r in rows], marker=".", label=key)
    ax.set(title="training", xlabel="epoch")
    ax.legend(fontsize=8)
    return fig
