"""Typed errors: the library raises them, only the CLI turns them into a line and an exit code."""


class PlugkitError(Exception):
    """A failure while running (unreadable data, damaged run, missing native core): exit 1."""

    exit_code = 1


class UsageError(PlugkitError):
    """Bad arguments, unknown names, invalid values: exit 2."""

    exit_code = 2
