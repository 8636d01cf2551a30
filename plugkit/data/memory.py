"""In-memory data for the Python API: a pandas DataFrame, a numpy array (with labels), a list
of strings.

    ds = from_memory(df)                          # a table
    ds = from_memory(images, labels=y)            # [N, H, W], [N, C, H, W] or [N, H, W, C]
    ds = from_memory(["anna", "bob"])             # text, one record per string

A run trained on in-memory data does not copy it: run.json keeps its fingerprint (kind, shape,
columns and dtypes, a SHA-256 of the content), and whoever continues, evaluates or resumes the
run hands the data back, refused when the fingerprint differs (`given_back`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from plugkit.data.dataset import DataError, Dataset
from plugkit.errors import UsageError

NAME = "in-memory data"


def is_memory(data: Any) -> bool:
    """Whether `data` is in-memory data rather than a built-in's name or a path."""
    from os import PathLike

    return data is not None and not isinstance(data, str | PathLike)


def from_memory(data: Any, modality: str | None = None,
                image_size: int | None = None) -> Dataset:
    """A Dataset (plugkit.data.load validates it) from in-memory data: a DataFrame (a table),
    a list of strings (text), an array or an (array, labels) pair (images or sequences, by
    shape as for a .npy file; a 2-D array is a table); a pandas Series is a one-column table."""
    data = _frame_of_series(data)
    if hasattr(data, "iloc"):  # a pandas DataFrame
        if modality not in (None, "table"):
            raise UsageError(f"a DataFrame is a table, not {modality} data")
        return Dataset(NAME, "table", data.reset_index(drop=True))
    if isinstance(data, list | tuple) and data and all(isinstance(s, str) for s in data):
        broken = next((i for i, s in enumerate(data) if "\n" in s or "\r" in s), None)
        if broken is not None:
            raise DataError(f"{NAME}: text records are lines, and string {broken} holds a line "
                            "break; split it first (str.splitlines)")
        if modality not in (None, "text"):
            raise UsageError(f"a list of strings is text, not {modality} data")
        return Dataset(NAME, "text", [s for s in data if s])
    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    x, y = _numpy(x), None if y is None else _numpy(y)
    if not isinstance(x, np.ndarray):
        raise UsageError(f"data must be a built-in's name, a path, a pandas DataFrame, a list "
                         f"of strings, an array or an (array, labels) pair; got "
                         f"{type(data).__name__}")
    from plugkit.data.readers import from_array

    return from_array(x, y, NAME, modality, image_size)


def _frame_of_series(data: Any) -> Any:
    """A pandas Series as the one-column DataFrame it stands for (named "value" if unnamed)."""
    if hasattr(data, "to_frame") and getattr(data, "ndim", None) == 1:
        return data.to_frame(name="value" if data.name is None else str(data.name))
    return data


def _numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value) if isinstance(value, list) else value


def fingerprint(data: Any) -> dict[str, Any]:
    """What run.json keeps of in-memory data: what it is, its shape (columns and dtypes for
    a DataFrame), and a SHA-256 of its content, labels included."""
    digest = hashlib.sha256()
    data = _frame_of_series(data)
    if hasattr(data, "iloc"):
        import pandas as pd

        columns = {str(c): str(t) for c, t in data.dtypes.items()}
        digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
        digest.update(repr(list(columns.items())).encode())
        record: dict[str, Any] = {"kind": "DataFrame", "rows": len(data), "columns": columns}
    elif isinstance(data, list | tuple) and data and all(isinstance(s, str) for s in data):
        for line in data:
            digest.update(line.encode("utf-8") + b"\n")
        record = {"kind": "strings", "rows": len(data)}
    else:
        parts = data if isinstance(data, tuple) else (data,)
        shapes = []
        for part in parts:
            a = np.ascontiguousarray(_numpy(part))
            digest.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
            shapes.append(list(a.shape))
        record = {"kind": "array" if len(parts) == 1 else "array, labels", "shape": shapes[0],
                  "rows": shapes[0][0] if shapes[0] else 0}
    return {**record, "sha256": digest.hexdigest()}


def describe(record: dict) -> str:
    """'a DataFrame of 150 rows' and the like, for messages."""
    article = "an" if record["kind"][0] in "aeiou" else "a"
    return f"{article} {record['kind']} of {record['rows']:,} rows"


def given_back(data: Any, expected: dict, run: Any) -> Any:
    """The in-memory data a run trained on, handed back to continue, evaluate or resume it: the
    object itself, or a file holding it (a DataFrame saved as .csv or .parquet, arrays as
    .npy/.npz, lines as .txt: what the CLI can take). Refused when missing or when its
    fingerprint differs from the one the run recorded."""
    if data is None:
        raise UsageError(f"{run} was trained on in-memory data ({describe(expected)}), which a "
                         "run does not keep: give the same data again")
    raw = data if is_memory(data) else _read_raw(Path(data))
    if fingerprint(raw) != expected:
        raise DataError(f"{run} was trained on other data ({describe(expected)}, sha256 "
                        f"{expected['sha256'][:12]}...); the data given differs")
    return raw


def _read_raw(path: Path) -> Any:
    """A file's content as the in-memory object it was saved from."""
    from plugkit.data import readers

    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: not found (no such file)")
    if suffix == ".npy":
        return readers._load_npy(path)
    if suffix == ".npz":
        x, y = readers._load_npz(path)
        return x if y is None else (x, y)
    if suffix in (".csv", ".parquet"):
        return readers._read_table(path)[0]  # the table, not its CSV style
    if suffix == ".txt":
        return readers._read_text(path).x
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'} for in-memory data")
