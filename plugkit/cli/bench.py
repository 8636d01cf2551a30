"""`plugkit bench`: how fast the kernels are, measured side by side in one process."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from plugkit.errors import UsageError

app = typer.Typer(
    help="Benchmarks (ratios measured side by side in one run).", no_args_is_help=True
)


def kernels(
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    quick: Annotated[
        bool, typer.Option(help="Tiny shapes, no torch.compile: a smoke run.")
    ] = False,
    compile_fallback: Annotated[
        bool, typer.Option("--compile/--no-compile", help="Also time torch.compile(fallback).")
    ] = True,
    threads: Annotated[int | None, typer.Option(
        help="torch's threads (or PLUGKIT_THREADS); default: the free cores.")] = None,
) -> None:
    """Forward+backward of every operator: native vs fallback vs compile(fallback) vs PyTorch."""
    import torch

    from plugkit import bench

    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible")
    from plugkit.threads import using

    with_compile = compile_fallback and not quick
    if as_json:
        with using(threads):
            results = bench.run_kernels(quick, device, with_compile=with_compile)
        typer.echo(bench.main_json(results))
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("benchmarking") as status, using(threads):
        results = bench.run_kernels(quick, device, with_compile=with_compile,
                                    progress=lambda line: status.update(line))
    # A pipe or file gets a fixed, wide layout instead of rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 140).print(bench.format_table(results))


def train_loop(
    family: Annotated[str, typer.Option(help="A family from `plugkit list`.")] = "vae",
    data: Annotated[str, typer.Option(help="A built-in dataset or a path.")] = "digits",
    epochs: Annotated[int, typer.Option(help="Epochs per timed run.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The training loop's cost: plugkit train vs a hand-written loop of the same steps."""
    import json

    from plugkit import bench_train

    result = bench_train.run(family, data, epochs, batch_size)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{family} on {data}, {epochs} epochs of batch {batch_size} (median of 3): "
               f"hand-written loop {result['hand_written_s']:.2f} s, plugkit train "
               f"{result['plugkit_s']:.2f} s, overhead {100 * result['overhead']:+.1f}% "
               "(validation, checkpoints and metrics each epoch included)")


def threads_bench(
    workload: Annotated[list[str] | None, typer.Option(
        help="vae/digits, gan/mnist-5k, lstm/names (repeatable; default all three).")] = None,
    seconds: Annotated[float, typer.Option(help="Training time of each run.")] = 6.0,
    repeats: Annotated[int, typer.Option(help="Interleaved repeats (the median counts).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Training samples/s at 1 thread, every core and the automatic choice: idle, next to a
    CPU-bound process started before the run, and next to one started halfway."""
    import json

    from plugkit import bench_threads

    names = tuple(workload or bench_threads.WORKLOADS)
    unknown = [n for n in names if n not in bench_threads.WORKLOADS]
    if unknown:
        raise UsageError(f"unknown workload {unknown[0]!r}; choose from "
                         + ", ".join(bench_threads.WORKLOADS))
    result = bench_threads.run(names, seconds, repeats,
                               progress=lambda line: print(line, file=sys.stderr, flush=True))
    typer.echo(json.dumps(result, indent=2) if as_json else bench_threads.format_table(result))
