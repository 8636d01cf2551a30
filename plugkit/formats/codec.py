"""How each modality's data becomes the tensors families train on, and their samples data again.

    x, y = encode(ds)                 # Batch.x rows for a whole dataset, and its labels or None
    data = decode(info, drawn)        # a family's samples in the data's own representation

image     float32 [N, C, H, W] in [0, 1], both ways
text      list[str] -> int64 tokens [N, L] (plugkit.formats.text) -> list[str]
table     DataFrame -> float32 [N, D] encoded rows (plugkit.formats.tabular) -> DataFrame
sequence  float32 [N, T, F] -> standardized per feature, bounded ones mapped onto the line first
          (plugkit.formats.sequence) -> data units, inside the bounds
The normalizations live in the data's meta, which the run stores, so a sample decodes the same
way years later.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from plugkit.family import DataInfo
from plugkit.formats import dates, sequence, tabular, text


class Records(Protocol):
    """What encode reads: a plugkit.data.Dataset, or anything with these attributes."""

    modality: str
    x: Any
    labels: np.ndarray | None
    meta: dict


def encode(ds: Records) -> tuple[torch.Tensor, torch.Tensor | None]:
    y = None if ds.labels is None else torch.from_numpy(ds.labels)
    if ds.modality == "text":
        x = text.encode(ds.x, ds.meta["vocab"])
    elif ds.modality == "table":
        x = tabular.encode(ds.x, ds.meta["encoding"])
    elif ds.modality == "sequence":
        x = sequence.standardize(ds.x, ds.meta)
    else:
        x = ds.x
    return torch.from_numpy(x), y


def decode(info: DataInfo, drawn: torch.Tensor | np.ndarray) -> Any:
    """What a family's sample() returned, in Batch.x's representation, as the data's own."""
    rows = drawn.detach().cpu().numpy() if isinstance(drawn, torch.Tensor) else np.asarray(drawn)
    if info.modality == "text":
        return text.decode(rows, info.meta["vocab"])
    if info.modality == "table":
        rows = tabular.decode(rows, info.meta["encoding"])
        if info.meta.get("derived"):
            rows = tabular.add_derived(rows, info.meta["derived"], list(info.meta["columns"]))
        return dates.restore(rows, info.meta.get("dates", {}))
    if info.modality == "sequence":
        return sequence.destandardize(rows, info.meta)
    return rows


def concat(parts: list[Any]) -> Any:
    """Blocks of one kind (lists, arrays or DataFrames) as one: what decode gave, block by
    block."""
    if isinstance(parts[0], list):
        return [item for part in parts for item in part]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import pandas as pd

    return pd.concat(parts, ignore_index=True)
