"""`plugkit doctor`: which backend each operator uses, how the native core was built, and why
the native path is off when it is."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from plugkit.errors import PlugkitError


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    require_native: Annotated[
        bool, typer.Option(help="Exit 1 unless the native CPU kernels are active (for CI).")
    ] = False,
    require_cuda_build: Annotated[
        bool, typer.Option(help="Exit 1 unless the CUDA kernels were compiled (for CI).")
    ] = False,
) -> None:
    """Report the operator backends and the native build."""
    import plugkit.ops
    from plugkit import threads

    report = plugkit.ops.backend()
    choice = threads.choose()
    if as_json:
        typer.echo(json.dumps({**asdict(report), "threads": asdict(choice)}, indent=2))
    else:
        _print(report)
        typer.echo(f"threads: {choice.threads} ({choice.reason}); --threads N or "
                   "PLUGKIT_THREADS=N fixes the count" if choice.auto else
                   f"threads: {choice.threads} (fixed by {choice.reason})")
    if require_native and report.active != "native":
        raise PlugkitError(f"the native core is not active: {report.reason}")
    if require_cuda_build and not report.cuda_compiled:
        raise PlugkitError("the CUDA kernels were not compiled (see README: Install)")


def _print(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from plugkit import __version__

    console = Console()
    console.print(f"plugkit {__version__}, torch {report.torch_version} "
                  f"(CUDA build: {report.torch_cuda or 'no'}; GPU present: "
                  f"{'yes' if report.cuda_available else 'no'})")
    console.print(f"backend: {report.active} on cpu ({report.reason}); "
                  f"choice: {report.choice} (PLUGKIT_BACKEND)")
    state = "loaded" if report.native_loaded else "off"
    console.print(f"native core: {state}: {report.native_status}")
    if report.native_loaded:
        console.print(f"  CPU kernels: {report.cpu_capability}; CUDA kernels: "
                      f"{'compiled' if report.cuda_compiled else 'not compiled'}")
    devices = sorted({d for per in report.ops.values() for d in per})
    table = Table("operator", *devices)
    for op, per_device in report.ops.items():
        table.add_row(op, *(per_device.get(d, "-") for d in devices))
    console.print(table)
