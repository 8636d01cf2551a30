"""`plugkit eval`: how real the samples are, each measure next to its real-vs-real floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def evaluate(
    source: Annotated[str, typer.Argument(help="A run directory, or a sample file (.npz/.npy "
                                          "images or sequences, .csv/.parquet, .txt).")],
    against: Annotated[str | None, typer.Option(
        help="The real data a sample file is compared with: a built-in dataset or a path; for a "
             "run trained in Python on in-memory data, that data saved to a file.")] = None,
    holdout: Annotated[str | None, typer.Option(help="Held-out real data (default: --against "
                                                "split in halves).")] = None,
    modality: Annotated[str | None, typer.Option(help="image, table, text or sequence, when the "
                                                 "files do not say.")] = None,
    window: Annotated[int | None, typer.Option(
        help="Sample windows against a series in a table: the windows of this length it "
             "holds (as `plugkit train --window`).")] = None,
    n: Annotated[int | None, typer.Option(
        help="Samples drawn from a run, or used from a file (default: the held-out size, at "
             "most 10,000; with under 1,000 held-out records, every real record's count, at "
             "most 2,000). The output says how many each measure compares.")] = None,
    target: Annotated[str | None, typer.Option(help="Tables: the column train-on-synthetic "
                                               "predicts (default: the dataset's label).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling, subsets and classifiers.")] = 0,
    weights: Annotated[str, typer.Option(
        help="A run's best (lowest validation loss, where the family keeps them) or last "
             "weights.")] = "best",
    out: Annotated[Path | None, typer.Option(help="Folder for metrics.json, report.html and "
                                             "figures/ (default: <run>/eval).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json, not a table.")]
    = False,
    setting: Annotated[list[str] | None, typer.Option(
        "-s", "--setting", metavar="KEY=VALUE",
        help="A sampler setting the run's samples are drawn with (repeatable; as for "
             "`plugkit sample`).")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Threads of torch and scikit-learn (or PLUGKIT_THREADS); default: the free "
             "cores.")] = None,
) -> None:
    """Compare synthetic samples with real data: fidelity, diversity, usefulness, privacy."""
    import plugkit
    from plugkit.cli.sample import settings_of

    if out is None and (Path(source) / "run.json").exists():
        out = Path(source) / "eval"
    report = plugkit.evaluate(source, against=against, holdout=holdout, modality=modality, n=n,
                              seed=seed, target=target, out=out, weights=weights,
                              settings=settings_of(setting or [], {}), threads=threads,
                              window=window)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
        return
    _print_table(report)
    if out is not None:
        typer.echo(f"wrote {out / 'report.html'} and {out / 'metrics.json'}")


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from plugkit.metrics.report import stat

    summary = report.summary
    console = Console()
    table = Table(title=f"{summary['source']}: {summary['modality']}, {summary['n']:,} samples,"
                        f" {summary['real_size']:,} real records")
    for column in ("measure", "synthetic", "real floor", "better"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for m in report.measures:
        table.add_row(m["name"], stat(m["value"], m.get("spread")),
                      stat(m["floor"], m.get("floor_spread")), m["better"])
    console.print(table)
    columns = report.details.get("columns")
    if columns:
        _print_columns(console, columns)
    for note in summary.get("notes", []):
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _print_columns(console, columns: list[dict], most: int = 10) -> None:
    from rich.table import Table

    from plugkit.metrics.report import stat

    table = Table(title="columns, worst first" + (f" ({most} of {len(columns)}; all in "
                                                  "report.html)" if len(columns) > most else ""))
    for column in ("column", "distance", "synthetic", "real floor", "missing gap",
                   "over floor"):
        table.add_column(column, justify="left" if column == "column" else "right",
                         overflow="fold")  # a long column name wraps, whole, never cut
    for col in columns[:most]:
        table.add_row(str(col["name"]), col["measure"], stat(col["synthetic"], col["spread"]),
                      stat(col["floor"], col["floor_spread"]),
                      f"{col['missing_gap']:.3f} ({col['missing_gap_floor']:.3f})",
                      f"{col['excess']:+.3f}")
    console.print(table)
