"""A run directory's files: run.json (what was trained, on what, how), weights, state, metrics,
samples. This module reads and writes run.json and metrics.jsonl; plugkit.runs.Run is a trained
run to use.

    runs/vae-digits/
        run.json            family + version, plugkit/torch versions, options, data, seed, status
        model.safetensors   weights (plugkit.checkpoint)
        state.pt            optimizers, RNG streams, loop counters (weights_only loading)
        metrics.jsonl       one JSON object per epoch
        samples/            what `plugkit sample` writes by default
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plugkit import atomic
from plugkit.errors import PlugkitError, UsageError

RUN_JSON, METRICS = "run.json", "metrics.jsonl"


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths too."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def dumps(record: dict) -> str:
    return json.dumps(record, indent=2, default=_plain) + "\n"


def create(run_dir: Path, record: dict, write: bool = True) -> None:
    """A new run directory holding `record` as run.json; never overwrites another run.
    write=False only checks (every rank of a multi-process run checks before the main one
    writes)."""
    if (run_dir / RUN_JSON).exists():
        family = read(run_dir)["family"]
        hint = ("continue it with `resume`" if family == record["family"]
                else f"it cannot be continued by {record['family']}")
        raise UsageError(f"{run_dir} already holds a run of {family}; {hint} or choose another "
                         "`out`")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"`out` {run_dir} is a file, not a folder")
    if not write:
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / RUN_JSON, dumps(record))
    except OSError as exc:
        raise PlugkitError(f"cannot write the run to {run_dir}: {exc.strerror or exc}") from None


def read(run_dir: Path) -> dict:
    """run.json of an existing run, or a one-line reason why it is not one."""
    path = Path(run_dir) / RUN_JSON
    if not Path(run_dir).exists():
        raise UsageError(f"{run_dir}: not found (no such run folder)")
    if not path.exists():
        raise UsageError(f"{run_dir} is not a plugkit run (no {RUN_JSON})")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlugkitError(f"{path} is damaged: {exc}") from None
    if not isinstance(record, dict) or "family" not in record:
        raise PlugkitError(f"{path} is damaged: no family recorded")
    return record


def data_spec(data: dict) -> str:
    """What to load a run's data from: the absolute path recorded when it trained (so a run is
    evaluated from any folder), or the built-in's name (and the spec of older runs)."""
    return data.get("path", data["spec"])


def image_size(data: dict) -> int | None:
    """The --image-size a run's data loads with. Runs made before it was refused on data other
    than images recorded it anyway, and it changed nothing for them."""
    return data.get("image_size") if data["modality"] == "image" else None


def update(run_dir: Path, **fields: Any) -> None:
    """Sets fields of run.json; a field set to None is removed."""
    record = read(run_dir)
    record.update(fields)
    record = {k: v for k, v in record.items() if v is not None}
    atomic.write_text(run_dir / RUN_JSON, dumps(record))


def append_metrics(run_dir: Path, row: dict) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(row, default=_plain) + "\n")


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drops the rows logged after `step` (a crash after logging, before the checkpoint)."""
    path = run_dir / METRICS
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _row_step(line) <= step]
    if len(kept) != len(lines):
        atomic.write_text(path, "".join(kept))


def _row_step(line: str) -> float:
    """A row's step; a line torn by a crash mid-write counts as past every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")
