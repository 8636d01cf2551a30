"""`plugkit train` and `plugkit sample`: thin wrappers around plugkit.training and sampling."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer


def train(
    family: Annotated[str, typer.Argument(help="A family from `plugkit list`.")],
    data: Annotated[str | None, typer.Option(
        help="A built-in dataset (`plugkit datasets`) or a path; default: the family's own.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/FAMILY-DATA).")
                   ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of every random stream.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    option: Annotated[list[str] | None, typer.Option(
        "-o", "--option", help="A family option key=value (repeatable; see `plugkit info`).")
    ] = None,
    modality: Annotated[str | None, typer.Option(help="Force image/table/text/sequence.")
                        ] = None,
    image_size: Annotated[int | None, typer.Option(help="Resize images to this square size.")
                          ] = None,
    max_time: Annotated[float | None, typer.Option(
        help="Stop cleanly after this many seconds (resumable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per epoch.")] = False,
) -> None:
    """Train a model family on a dataset; writes a run directory."""
    from plugkit.training import TrainConfig
    from plugkit.training import train as run_training

    config = TrainConfig(family=family, data=data, out=out, epochs=epochs,
                         batch_size=batch_size, seed=seed, device=device,
                         options=option or [], modality=modality, image_size=image_size,
                         max_time=max_time, resume=resume)

    def report(row: dict) -> None:
        if as_json:
            typer.echo(json.dumps(row))
        else:
            losses = "  ".join(f"{k} {v:.4g}" for k, v in row.items()
                               if k not in ("epoch", "step", "samples_per_s"))
            typer.echo(f"epoch {row['epoch']}/{epochs}  {losses}  "
                       f"{row['samples_per_s']:.0f} samples/s")

    if as_json or not sys.stdout.isatty():  # a pipe or a log file gets plain lines
        run_dir = run_training(config, report)
    else:
        with _progress_bar(epochs, batch_size) as on_step:
            run_dir = run_training(config, report, on_step)
    if not as_json:
        typer.echo(f"saved {run_dir}")


@contextlib.contextmanager
def _progress_bar(epochs: int, batch_size: int) -> Iterator:
    """A rich progress bar over the current epoch: step, losses, samples/s and ETA."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[losses]}"),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch=1, losses="", rate="")
        epoch_start = {"epoch": -1, "time": 0.0, "position": 0}

        def on_step(epoch: int, position: int, steps: int, losses: dict) -> None:
            if epoch != epoch_start["epoch"]:
                epoch_start.update(epoch=epoch, time=time.monotonic(), position=position - 1)
            elapsed = max(time.monotonic() - epoch_start["time"], 1e-9)
            rate = (position - epoch_start["position"]) * batch_size / elapsed
            bar.update(task, completed=position, total=steps, epoch=epoch + 1,
                       losses="  ".join(f"{k} {v:.4g}" for k, v in losses.items()),
                       rate=f"{rate:.0f} samples/s")

        yield on_step


def sample(
    run: Annotated[Path, typer.Argument(help="A run directory written by `plugkit train`.")],
    n: Annotated[int, typer.Option("--n", help="How many samples.")] = 64,
    out: Annotated[Path | None, typer.Option(
        help="Output file: .png grid, .npz or .npy for images, .txt for text "
             "(default RUN/samples/samples.png or .txt).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
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
) -> None:
    """Draw samples from a trained run into a file (plus a sidecar JSON)."""
    from plugkit.sampling import sample as draw

    given = {"temperature": temperature, "top_k": top_k, "prefix": prefix, "where": where}
    settings = {k: v for k, v in given.items() if v is not None}  # image runs get none
    typer.echo(f"wrote {draw(run, n, out, seed, **settings)}")
