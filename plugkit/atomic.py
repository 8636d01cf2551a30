"""Atomic file writes: a temp file in the same folder, then os.replace, so a crash or a full
disk never leaves a half-written file in place of a good one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write(path: Path, fill: Callable[[Path], None]) -> None:
    """Calls fill(temp_path) and moves the result to `path` only if fill succeeded."""
    tmp = stage(path, fill)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stage(path: Path, fill: Callable[[Path], None]) -> Path:
    """A complete temp file in `path`'s folder, filled by fill(temp_path), for the caller to
    rename into place (several files can then be swapped in an order of its choosing); nothing
    is left behind if fill fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make every output private
    try:
        fill(Path(tmp))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    write(path, lambda tmp: tmp.write_text(text))
