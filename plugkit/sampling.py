"""Sampling from a trained run into the user's format, with a sidecar JSON for traceability.

    plugkit.sampling.sample("runs/vae-digits", n=64, out="grid.png", seed=0)

Images: .png (a grid), .npz (x and, when conditional, labels) or .npy; tables: .csv or
.parquet with the data's columns and dtypes; sequences: .npz/.npy [n, T, F] in the data's
units; text: .txt, one sample per line (sampler settings such as temperature=0.8, top_k=5,
prefix="ma", or for tables where="income=>50K", pass through). The sidecar `<out>.json` records
the run, the seed and the settings, so every sample file is traceable.

Any n fits in memory: samples are drawn BLOCK at a time (block k by its own generator, keyed by
the seed and k: see plugkit.runs.Run.draw) and streamed into the temp file: .csv rows, .txt
lines, .parquet row groups, .npy/.npz data after a header written for the full shape. Only the
.png grid is built in memory, up to GRID_MAX tiles. The temp file becomes `out` when it is
complete; on any error (a full disk, Ctrl-C) nothing is left behind.

A .png grid is laid out by plugkit.formats.grid.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import itertools
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from plugkit import atomic, runs
from plugkit.errors import PlugkitError, UsageError, out_of_memory
from plugkit.formats.grid import grid_image

FORMATS = {"image": (".png", ".npz", ".npy"), "text": (".txt",), "table": (".csv", ".parquet"),
           "sequence": (".npz", ".npy")}  # the first is the default


GRID_MAX = 10_000  # the .png grid is built in memory: 10,000 tiles is already a huge picture


def sample(run_dir: str | Path, n: int | None = None, out: str | Path | None = None,
           seed: int = 0, weights: str = "best", label: str | None = None,
           per_class: int | None = None, **settings: Any) -> Path:
    """Writes n samples of a run to `out` (default: <run>/samples/samples.<the modality's first
    format>); returns it. `settings` go to the family's sampler, by name (its Settings: text:
    temperature, top_k, prefix; tables: where="COLUMN=VALUE"). Samples are drawn and written
    in blocks (runs.Run.draw), so memory stays bounded whatever n is; the file and its sidecar
    appear whole, or not at all.

    Class-conditional runs (family.num_classes > 0) draw every sample for a label, in class
    order: all of `label` (a class name or index), `per_class` of each class (n = per_class *
    classes; a .png grid then shows one class per row), or by default the training data's
    class mix. A .npz holds the labels beside the images.
    """
    run = runs.Run(run_dir)
    n = _count(n, per_class, run.record)
    modality = run.modality
    formats = FORMATS[modality]
    out = Path(out) if out is not None else run.path / "samples" / f"samples{formats[0]}"
    if out.suffix not in formats:
        raise UsageError(f"`out` must end in {', '.join(formats)} for {modality} samples, "
                         f"got {out.name!r}")
    if out.suffix == ".png" and n > GRID_MAX:
        raise UsageError(f"`n` {n:,} is too many for a .png grid (at most {GRID_MAX:,}); "
                         "write .npz or .npy instead")
    labels = run.labels(n, label, per_class, weights)
    chosen = dataclasses.asdict(run.settings(**settings))
    sidecar = {"run": str(run.path), "family": run.family_name, "n": n, "seed": seed,
               "weights": run.weights_used(weights), "settings": chosen, "file": out.name}
    if labels is not None:
        sidecar |= {"label": label, "per_class": per_class, "classes": run.classes}
    if "privacy" in run.record:  # a shared file carries its guarantee
        sidecar["privacy"] = run.record["privacy"]
    writer = WRITERS[out.suffix]
    style = run.info.meta.get("csv")
    if out.suffix == ".csv" and style:  # the data's own CSV style: `;` and 1,5 in, out
        writer = functools.partial(writer, **style)
    if labels is not None and out.suffix in (".npz", ".png"):
        writer = functools.partial(writer, labels=labels, per_row=per_class)
    try:
        drawn = run.draw(n, seed, labels=labels, weights=weights, **settings)
        drawn = itertools.chain([next(drawn)], drawn)  # bad settings fail before any file exists
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(out, lambda tmp: writer(tmp, drawn, n), json.dumps(sidecar, indent=2) + "\n")
    except OSError as exc:
        raise PlugkitError(f"cannot write {out}: {_reason(exc)}") from None
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        raise PlugkitError(f"out of memory drawing {min(n, runs.BLOCK):,} samples at a time "
                           f"for {out}; nothing was written") from None
    return out


def _count(n: int | None, per_class: int | None, record: dict) -> int:
    if per_class is None:
        n = 64 if n is None else n
    else:
        if per_class < 1:
            raise UsageError(f"`per_class` must be at least 1, got {per_class}")
        classes = record["data"]["classes"] or []
        if n is not None and n != per_class * len(classes):
            raise UsageError(f"`n` {n} and `per_class` {per_class} disagree: "
                             f"{len(classes)} classes x {per_class} = "
                             f"{per_class * len(classes)} samples; give one of the two")
        n = per_class * len(classes) or per_class  # no classes: Run.labels says why
    if n < 1:
        raise UsageError(f"`n` must be at least 1, got {n}")
    return n


def _write(out: Path, fill: Callable[[Path], None], sidecar: str) -> None:
    """The samples and their sidecar, each staged complete, then renamed into place samples
    first: a failure before that leaves neither file, and no temp file either."""
    staged = [atomic.stage(out, fill)]
    try:
        staged.append(atomic.stage(_sidecar(out), lambda tmp: tmp.write_text(sidecar)))
        for tmp, target in zip(staged, (out, _sidecar(out)), strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)  # gone already when its rename succeeded


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _reason(exc: OSError) -> str:
    found = re.search(r"\[errno (\d+)\]", str(exc))  # pyarrow's OSErrors carry it in the text
    code = exc.errno or (int(found[1]) if found else None)
    if code == errno.ENOSPC:
        return "the disk is full (no space left on device); nothing was written"
    if code in (errno.EEXIST, errno.ENOTDIR):
        return "a file stands where a folder is expected"
    return os.strerror(code) if code else (str(exc).splitlines() or [repr(exc)])[0]


# Writers: (temp path, blocks, n). Each streams block after block into the temp file.

def _write_text(tmp: Path, drawn: Iterable[list[str]], n: int) -> None:
    """One sample per line; a sample can hold no newline (the data's lines had none)."""
    with open(tmp, "w", encoding="utf-8") as f:
        for lines in drawn:
            f.write("".join(f"{line}\n" for line in lines))


def _write_csv(tmp: Path, drawn: Iterable[Any], n: int, sep: str = ",",
               decimal: str = ".") -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as f:  # newline="": pandas writes \n
        for k, df in enumerate(drawn):
            df.to_csv(f, header=k == 0, index=False, sep=sep, decimal=decimal)


def _write_parquet(tmp: Path, drawn: Iterable[Any], n: int) -> None:
    """One row group per block, all in the first block's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for df in drawn:
            if writer is None:
                schema = _typed(pa, pa.Table.from_pandas(df, preserve_index=False).schema)
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False))
    finally:
        if writer is not None:
            writer.close()


def _typed(pa, schema):
    """A column all missing in the first block has no type yet: make it strings, what
    categories nearly always are (a later block of bools or numbers there would fail)."""
    for i, field in enumerate(schema):
        if pa.types.is_null(field.type):
            schema = schema.set(i, field.with_type(pa.string()))
    return schema


def _write_npy(tmp: Path, drawn: Iterable[np.ndarray], n: int) -> None:
    with open(tmp, "wb") as f:
        _stream_npy(f, drawn, n)


def _write_npz(tmp: Path, drawn: Iterable[np.ndarray], n: int,
               labels: np.ndarray | None = None, per_row: int | None = None) -> None:
    """What np.savez(x=..., labels=...) writes (an uncompressed zip holding x.npy and, for a
    conditional run, labels.npy), x streamed into the zip."""
    with zipfile.ZipFile(tmp, "w", allowZip64=True) as z:
        if labels is not None:
            with z.open("labels.npy", "w") as f:
                np.save(f, labels)
        with z.open("x.npy", "w", force_zip64=True) as f:
            _stream_npy(f, drawn, n)


def _stream_npy(f: IO[bytes], drawn: Iterable[np.ndarray], n: int) -> None:
    """A .npy of n rows: the header for the full shape first, then each block's bytes."""
    rows, header = 0, None
    for x in drawn:
        x = np.ascontiguousarray(x)
        if header is None:
            header = {"descr": np.lib.format.dtype_to_descr(x.dtype), "fortran_order": False,
                      "shape": (n, *x.shape[1:])}
            np.lib.format.write_array_header_1_0(f, header)
        assert np.lib.format.dtype_to_descr(x.dtype) == header["descr"], "blocks differ"
        assert x.shape[1:] == header["shape"][1:], "blocks differ in shape"
        f.write(memoryview(x).cast("B"))
        rows += len(x)
    assert rows == n, f"drew {rows} samples, not {n}"


def _write_png(tmp: Path, drawn: Iterable[np.ndarray], n: int,
               labels: np.ndarray | None = None, per_row: int | None = None) -> None:
    """A grid in sample order (class order for a conditional run; one class per row with
    `per_class`): mode L for grayscale, RGB for colour, small images enlarged (grid_image)."""
    from PIL import Image

    images = np.concatenate(list(drawn))  # (n, C, H, W) in [0, 1]
    # to bytes before enlarging: the grid then takes a quarter of a float32 grid's memory
    pixels = np.clip((images * 255).round(), 0, 255).astype(np.uint8)
    grid = grid_image(pixels, cols=per_row)  # (height, width, C)
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(tmp, "PNG")


WRITERS = {".txt": _write_text, ".csv": _write_csv, ".parquet": _write_parquet,
           ".npy": _write_npy, ".npz": _write_npz, ".png": _write_png}
