"""`plugkit datasets`: the built-in real datasets, whether each is installed, how to get it."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def datasets(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Built-in datasets (use the name with --data); any file or folder works too."""
    from plugkit.data import available_datasets

    rows = available_datasets()
    if as_json:
        typer.echo(json.dumps([r._asdict() for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("dataset", "modality", "installed", "description", "how to get it")
    for r in rows:
        table.add_row(r.name, r.modality, "yes" if r.installed else "no", r.description,
                      "" if r.installed else r.hint)
    Console().print(table)
