"""Typed errors: the library raises them, only the CLI turns them into a line and an exit code.

A message names a setting by its Python name in backquotes, "`per_class` must be at least 1",
as a caller of plugkit.sample(per_class=...) knows it; the CLI shows the flag instead,
"--per-class must be at least 1" (`for_cli`).
"""

import re


class PlugkitError(Exception):
    """A failure while running (unreadable data, damaged run, missing native core): exit 1."""

    exit_code = 1


class UsageError(PlugkitError):
    """Bad arguments, unknown names, invalid values: exit 2."""

    exit_code = 2


def out_of_memory(exc: BaseException) -> bool:
    """MemoryError (numpy's too), torch's (CUDA) OutOfMemoryError, or the CPU allocator's
    RuntimeError: what deserves "lower --n / --batch-size" instead of a traceback."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def for_cli(message: str) -> str:
    """A library message as the CLI shows it: every `setting` as its flag, --setting-name."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m[1].replace("_", "-"), message)
