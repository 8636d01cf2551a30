"""`plugkit eval`: how real the samples are, each measure next to its real-vs-real floor;
`plugkit augment`: what they add to a downstream classifier."""

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
    weights: Annotated[str, typer.Option(
        help="A run's best (lowest validation loss, where the family keeps them) or last "
             "weights.")] = "best",
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
                      seed=seed, target=target, out=out, weights=weights)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
        return
    _print_table(report)
    if out is not None:
        typer.echo(f"wrote {out / 'report.html'} and {out / 'metrics.json'}")


def augment(
    run: Annotated[Path, typer.Argument(help="A run trained on labelled images.")],
    per_class: Annotated[int | None, typer.Option(
        help="Synthetic images per class (default: the largest class's training count).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and the classifier.")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Also write the augmented training set (real + synthetic, with labels) here, "
             ".npz.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a classifier on real images, on real + class-balanced synthetic ones, and on
    synthetic alone; report each one's accuracy on held-out real images."""
    from plugkit.augment import augment as run_augment

    result = run_augment(run, per_class=per_class, seed=seed, out=out)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['classifier']}, accuracy on {result['holdout']:,} held-out real "
               f"images:")
    for name, value in result["accuracy"].items():
        typer.echo(f"  {name:<17} {value:.4f}")
    typer.echo(f"gain of adding {result['synthetic']:,} synthetic images "
               f"({result['per_class']:,} per class) to {result['real_train']:,} real: "
               f"{result['gain']:+.4f}")
    if out is not None:
        typer.echo(f"wrote {out}")


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
