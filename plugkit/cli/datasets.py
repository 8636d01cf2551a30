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

    missing = any(not r.installed for r in rows)
    table = Table()
    table.add_column("dataset", no_wrap=True)  # the name users type: whole, never cut
    for head in ("modality", "installed", "description", *(["how to get it"] if missing else [])):
        table.add_column(head)
    for r in rows:
        table.add_row(r.name, r.modality, "yes" if r.installed else "no", r.description,
                      *([("" if r.installed else r.hint)] if missing else []))
    Console().print(table)
