"""`plugkit list` and `plugkit info`: the installed model families and their options."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def list_families(as_json: JsonFlag = False) -> None:
    """Every installed model family, built-in or third-party, and whether it loads."""
    from plugkit import plugins

    rows = []
    for entry in plugins.entries().values():
        family = entry.family
        rows.append({
            "name": entry.name,
            "version": entry.version,
            "distribution": entry.distribution,
            "modalities": list(family.modalities) if family else [],
            "conditional": bool(family and family.conditional),
            "private": list(family.private) if family else [],
            "description": family.description if family else "",
            "status": "ok" if family else f"broken: {entry.error}",
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no model families installed (entry-point group plugkit.models)")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    # The whole table needs about 170 columns; a terminal narrower than that gets the short
    # columns in a table and each description on its own line below it, not cells of one word.
    wide = console.width >= 170
    heads = (["family", "version", "distribution", "modalities", "conditional",
              "private (--dp-epsilon)", "status", "description"] if wide else
             ["family", "version", "from", "modalities", "cond.", "private", "status"])
    table = Table(*heads)
    for r in rows:
        table.add_row(r["name"], r["version"], r["distribution"], ", ".join(r["modalities"]),
                      "yes" if r["conditional"] else "no", ", ".join(r["private"]) or "no",
                      r["status"], *([r["description"]] if wide else []))
    console.print(table)
    if not wide:
        for r in rows:
            console.print(f"[bold]{r['name']}[/bold]: {r['description'] or '(broken)'}",
                          markup=True, highlight=False)


def info(
    family: Annotated[str, typer.Argument(help="A family name, as `plugkit list` shows it.")],
    as_json: JsonFlag = False,
) -> None:
    """A family's description, options (-o key=value when training) and sampler settings
    (-s key=value when sampling)."""
    from plugkit import options, plugins

    cls = plugins.get(family)
    kinds = {"option": options.describe(cls.Options), "setting": options.describe(cls.Settings)}
    by_modality: dict[str, dict] = {}  # option -> {modality: its default there}
    for modality, values in cls.modality_options.items():
        for name, value in values.items():
            by_modality.setdefault(name, {})[modality] = value
    if as_json:
        doc = {"name": cls.name, "description": cls.description,
               "modalities": list(cls.modalities), "conditional": cls.conditional,
               "likelihood": cls.likelihood, "private": list(cls.private),
               "api_version": cls.api_version,
               "options": [asdict(o) | {"defaults_by_modality": by_modality.get(o.name, {})}
                           for o in kinds["option"]],
               "settings": [asdict(o) for o in kinds["setting"]]}
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{cls.name}: {cls.description}")
    console.print(f"modalities: {', '.join(cls.modalities)}; conditional: "
                  f"{'yes' if cls.conditional else 'no'}; trains privately (--dp-epsilon): "
                  f"{', '.join(cls.private) or 'no'}")
    for kind, described in kinds.items():
        if not described:
            console.print(f"no {kind}s")
            continue
        table = Table(kind, "type", "default", "allowed", "help")
        for o in described:
            allowed = (", ".join(map(str, o.choices)) if o.choices else
                       " ".join(filter(None, (o.min is not None and f">= {o.min}",
                                              o.max is not None and f"<= {o.max}"))))
            elsewhere = by_modality.get(o.name, {}) if kind == "option" else {}
            default = repr(o.default) + "".join(f"; {modality}: {value!r}"
                                                for modality, value in elsewhere.items())
            table.add_row(o.name, o.type, default, allowed, o.help)
        console.print(table)
