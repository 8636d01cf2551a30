"""The `plugkit` command: a thin Typer layer over the library, one module per command.

Importing this module must stay cheap: `plugkit --help` loads neither torch nor any family, so
every command imports what it needs inside its function.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import typer

from plugkit import __version__, threads  # noqa: F401 (threads: its first load reading)
from plugkit.cli import (
    augment,
    bench,
    datasets,
    doctor,
    evaluate,
    families,
    new_plugin,
    sample,
    train,
)
from plugkit.errors import PlugkitError, for_cli

app = typer.Typer(
    name="plugkit",
    help="Train generative models and sample synthetic data from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def one_line_errors(command: Callable) -> Callable:
    """Library errors become one line on stderr and their exit code: 2 for usage, 1 for
    failures while running, 130 after Ctrl-C."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PlugkitError as exc:
            line = f"error: {for_cli(str(exc))}"
            typer.echo(line, err=True)
            if "PLUGKIT_ERROR_DIR" in os.environ:  # a worker of `train --nproc`
                from plugkit.distributed import report_failure

                report_failure(line, exc.exit_code)
            raise typer.Exit(exc.exit_code) from None

    return run


for name, command in [("train", train.train), ("sample", sample.sample),
                      ("list", families.list_families), ("info", families.info),
                      ("new-plugin", new_plugin.new_plugin), ("eval", evaluate.evaluate),
                      ("augment", augment.augment),
                      ("datasets", datasets.datasets), ("doctor", doctor.doctor)]:
    app.command(name)(one_line_errors(command))
bench.app.command("kernels")(one_line_errors(bench.kernels))
bench.app.command("train")(one_line_errors(bench.train_loop))
bench.app.command("threads")(one_line_errors(bench.threads_bench))
app.add_typer(bench.app, name="bench")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"plugkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train generative models and sample synthetic data from them."""


def main() -> None:
    """Console entry point (standalone mode: click turns typer.Exit into the exit code)."""
    app()
