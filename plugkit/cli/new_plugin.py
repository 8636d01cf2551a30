"""`plugkit new-plugin`: scaffold a pip-installable family package (docs/plugins.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def new_plugin(
    name: Annotated[str, typer.Argument(help="The family's name, a lowercase identifier.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the package.")
                         ] = Path("."),
) -> None:
    """Scaffold a pip-installable family package (entry point, module, conformance tests)."""
    from plugkit import scaffold

    root = scaffold.create(name, directory)
    typer.echo(f"created {root}; next: pip install -e {root} && plugkit list")
