"""How each modality's data becomes the tensors families train on, and their samples data again.

    x, y = encode(ds)                 # Batch.x rows for the whole dataset, labels or None
    data = decode(info, drawn)        # a family's samples in the data's own representation

image     float32 [N, C, H, W] in [0, 1], both ways
text      int64 tokens [N, L] (plugkit.data.text) in; list[str] out
table     float32 [N, D] encoded rows (plugkit.data.tabular) in; encoded rows -> DataFrame out
sequence  float32 [N, T, F] standardized per feature in; standardized -> original units out
The normalizations live in the dataset's meta, which the run stores, so a sample decodes the
same way years later.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from plugkit.data import tabular, text
from plugkit.data.dataset import Dataset
from plugkit.family import DataInfo


def encode(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
    y = None if ds.labels is None else torch.from_numpy(ds.labels)
    if ds.modality == "text":
        x = text.encode(ds.x, ds.meta["vocab"])
    elif ds.modality == "table":
        x = tabular.encode(ds.x, ds.meta["encoding"])
    elif ds.modality == "sequence":
        mean, std = _moments(ds.meta)
        x = ((ds.x - mean) / std).astype(np.float32)
    else:
        x = ds.x
    return torch.from_numpy(x), y


def decode(info: DataInfo, drawn: Any) -> Any:
    if info.modality == "text":
        return drawn
    rows = drawn.detach().cpu().numpy() if isinstance(drawn, torch.Tensor) else np.asarray(drawn)
    if info.modality == "table":
        return tabular.decode(rows, info.meta["encoding"])
    if info.modality == "sequence":
        mean, std = _moments(info.meta)
        return (rows * std + mean).astype(np.float32)
    return rows


def _moments(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std, shaped to broadcast over [N, T, F]."""
    return np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
