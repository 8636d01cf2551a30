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
    where: Annotated[list[str] | None, typer.Option(
        metavar="COLUMN=VALUE",
        help="Tables: every row has VALUE in the categorical COLUMN, e.g. --where "
             "'income=>50K' (drawn so by the model, not filtered).")] = None,
    setting: Annotated[list[str] | None, typer.Option(
        "-s", "--setting", metavar="KEY=VALUE",
        help="A sampler setting of the run's family (repeatable; see `plugkit info`).")
    ] = None,
    threads: Annotated[int | None, typer.Option(
        help="torch's threads (or PLUGKIT_THREADS); default: the free cores.")] = None,
) -> None:
    """Draw samples from a trained run into a file (plus a sidecar JSON)."""
    from plugkit import sampling
    from plugkit.errors import UsageError
    from plugkit.threads import using

    if where and len(where) > 1:  # click would keep the last one, silently
        raise UsageError(f"--where takes one COLUMN=VALUE (rows of one category), got "
                         f"{len(where)}: {', '.join(where)}")
    flags = {"temperature": temperature, "top_k": top_k, "prefix": prefix,
             "where": where[0] if where else None}
    settings = settings_of(setting or [], {k: v for k, v in flags.items() if v is not None})
    with using(threads):
        written = sampling.sample(run, n, out, seed, weights=weights, label=label,
                                  per_class=per_class, **settings)
    typer.echo(f"wrote {written}")


def settings_of(pairs: list[str], flags: dict) -> dict:
    """-s key=value pairs and the settings flags (--temperature ...), by name; the family's
    Settings validates them (so `plugkit --help` imports no family)."""
    from plugkit.errors import UsageError

    settings = dict(flags)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"-s takes KEY=VALUE, got {pair!r}")
        if key in settings:
            raise UsageError(f"the sampler setting {key} is given twice")
        settings[key] = value.strip()
    return settings
