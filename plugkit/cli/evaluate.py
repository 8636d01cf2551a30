"""`plugkit eval`: how real the samples are, each measure next to its real-vs-real floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def evaluate(
    source: Annotated[str, typer.Argument(help="A run directory, or a sample file (.npz/.npy "
                                          "images or sequences, .csv/.parquet, .txt).")],
    against: Annotated[str | None, typer.Option(help="The real data a sample file is compared "
                                                "with: a built-in dataset or a path.")] = None,
    holdout: Annotated[str | None, typer.Option(help="Held-out real data (default: --against "
                                                "split in halves).")] = None,
    modality: Annotated[str | None, typer.Option(help="image, table, text or sequence, when the "
                                                 "files do not say.")] = None,
    n: Annotated[int | None, typer.Option(help="Samples compared (default: the held-out size, "
                                          "at most 10,000).")] = None,
    target: Annotated[str | None, typer.Option(help="Tables: the column train-on-synthetic "
                                               "predicts (default: the dataset's label).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling, subsets and classifiers.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for metrics.json, report.html and "
                                             "figures/ (default: <run>/eval).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json, not a table.")]
    = False,
) -> None:
    """Compare synthetic samples with real data: fidelity, diversity, usefulness, privacy."""
    from plugkit.metrics.evaluate import evaluate as run_eval

    if out is None and (Path(source) / "run.json").exists():
        out = Path(source) / "eval"
    report = run_eval(source, against=against, holdout=holdout, modality=modality, n=n,
                      seed=seed, target=target, out=out)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
        return
    _print_table(report)
    if out is not None:
        typer.echo(f"wrote {out / 'report.html'} and {out / 'metrics.json'}")


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = report.summary
    table = Table(title=f"{summary['source']}: {summary['modality']}, n = {summary['n']}")
    for column in ("measure", "synthetic", "real floor", "better"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for m in report.measures:
        table.add_row(m["name"], _fmt(m["value"]), _fmt(m["floor"]), m["better"])
    Console().print(table)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4g}"
