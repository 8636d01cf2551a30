"""Typed errors: the library raises them, only the CLI turns them into a line and an exit code."""


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
