"""The `plugkit` command: a thin Typer layer over the library, one module per command.

Importing this module must stay cheap: `plugkit --help` loads neither torch nor any family, so
every command imports what it needs inside its function.
"""

from __future__ import annotations

import sys

import typer

from plugkit import __version__
from plugkit.cli import bench, datasets, doctor, families
from plugkit.errors import PlugkitError

app = typer.Typer(
    name="plugkit",
    help="Train generative models and sample synthetic data from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("list")(families.list_families)
app.command("info")(families.info)
app.command("datasets")(datasets.datasets)
app.command("doctor")(doctor.doctor)
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
    """Console entry point: library errors become one line on stderr and an exit code."""
    try:
        app(standalone_mode=False)
    except PlugkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
