"""`plugkit augment`: what synthetic images add to a downstream classifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


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
    threads: Annotated[int | None, typer.Option(
        help="Threads of torch and scikit-learn (or PLUGKIT_THREADS); default: the free "
             "cores.")] = None,
) -> None:
    """Train a classifier on real images, on real + class-balanced synthetic ones, and on
    synthetic alone; report each one's accuracy on held-out real images."""
    import plugkit.augment
    from plugkit.threads import using

    with using(threads):
        result = plugkit.augment.augment(run, per_class=per_class, seed=seed, out=out)
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
