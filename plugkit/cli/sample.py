"""`plugkit sample`: a thin wrapper around plugkit.sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sample(
    run: Annotated[Path, typer.Argument(help="A run directory written by `plugkit train`.")],
    n: Annotated[int | None, typer.Option(
        "--n", help="How many samples (default 64, or --per-class x classes).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output file: .png grid, .npz or .npy for images, .csv or .parquet for tables, "
             ".npz or .npy for sequences, .txt for text (default RUN/samples/samples.<first>)."
    )] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
    weights: Annotated[str, typer.Option(
        help="best (lowest validation loss, where the family keeps them) or last.")] = "best",
    label: Annotated[str | None, typer.Option(
        help="Class-conditional runs: every sample of this class (a name or an index).")
    ] = None,
    per_class: Annotated[int | None, typer.Option(
        help="Class-conditional runs: this many samples of every class, in class order.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(
        help="Text: divide the logits by this (<1 safer, >1 wilder; default 1).")] = None,
    top_k: Annotated[int | None, typer.Option(
        help="Text: draw only among the k likeliest next characters.")] = None,
    prefix: Annotated[str | None, typer.Option(
        help="Text: every sample starts with these characters.")] = None,
    where: Annotated[str | None, typer.Option(
        metavar="COLUMN=VALUE",
        help="Tables: every row has VALUE in the categorical COLUMN, e.g. --where "
             "'income=>50K' (drawn so by the model, not filtered).")] = None,
    threads: Annotated[int | None, typer.Option(
        help="torch's threads (or PLUGKIT_THREADS); default: the free cores.")] = None,
) -> None:
    """Draw samples from a trained run into a file (plus a sidecar JSON)."""
    from plugkit import sampling
    from plugkit.threads import using

    given = {"temperature": temperature, "top_k": top_k, "prefix": prefix, "where": where}
    settings = {k: v for k, v in given.items() if v is not None}  # image runs get none
    with using(threads):
        written = sampling.sample(run, n, out, seed, weights=weights, label=label,
                                  per_class=per_class, **settings)
    typer.echo(f"wrote {written}")
