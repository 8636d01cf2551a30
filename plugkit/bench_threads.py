"""Training speed at 1 thread, at every core and at plugkit's automatic choice, on an idle
machine and next to a CPU-bound process (`plugkit bench threads`).

Each run trains one workload for a fixed time from the same start and counts the samples it
got through. Scenarios: idle; a CPU-bound neighbour (one busy-looping process) started before
the run; the same neighbour started halfway through. Settings are interleaved within each
repeat, so a slow minute of the machine falls on all of them alike; medians over repeats.
Target (issue 12): in every cell the automatic choice reaches >= 0.85x the best fixed setting.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch

from plugkit import data, options, plugins, threads
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec

WORKLOADS = {  # (family, data, options): small to large steps
    "vae/digits": ("vae", "digits", ()),
    "gan/mnist-5k": ("gan", "mnist-5k", ()),
    "lstm/names": ("lstm", "names", ()),
}
SCENARIOS = ("idle", "busy before", "busy halfway")


@contextlib.contextmanager
def neighbour(start_after: float | None) -> Iterator[None]:
    """A CPU-bound process (a busy loop, like a test run or a build) for the block's length,
    started `start_after` seconds in (None: no neighbour)."""
    if start_after is None:
        yield
        return
    command = [sys.executable, "-c", f"import time; time.sleep({start_after})\nwhile True: pass"]
    process = subprocess.Popen(command)
    try:
        yield
    finally:
        process.kill()
        process.wait()


def _workload(name: str, batch_size: int) -> Callable[[], Iterator]:
    """A factory of fresh (family, batches) pairs that all start from the same state."""
    family_name, spec, opts = WORKLOADS[name]
    cls = plugins.get(family_name)
    ds = data.load(spec)
    x, y = codec.encode(ds)
    info = DataInfo(ds.modality, ds.meta, ds.classes)
    opts = options.with_defaults(cls.modality_options.get(ds.modality, {}), list(opts))

    def fresh():
        torch.manual_seed(0)
        family = cls(options.parse(cls.Options, list(opts), cls.name), info,
                     torch.device("cpu"))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))

        def batches():
            while True:
                for i in range(0, len(x) - batch_size + 1, batch_size):
                    rows = order[i:i + batch_size]
                    yield Batch(x[rows], None if y is None else y[rows])

        return family, batches()

    return fresh


def _run(fresh, setting: str, seconds: float, start_after: float | None) -> float:
    """Samples per second of `seconds` of training steps at a setting."""
    family, batches = fresh()
    if setting == "auto":
        governor = threads.Governor(threads.automatic())
    else:
        governor = threads.Governor(threads.Choice(int(setting), False, "fixed"))
    seen = 0
    with neighbour(start_after):
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < seconds:
            batch = next(batches)
            family.train_step(batch)
            governor.step(time.perf_counter() - now)
            seen += len(batch.x)
    return seen / (time.perf_counter() - start)


def _cell(fresh, setting: str, seconds: float, scenario: str) -> float:
    if scenario == "busy before":
        with neighbour(0.0):
            time.sleep(0.5)  # the neighbour is running when training starts
            return _run(fresh, setting, seconds, None)
    return _run(fresh, setting, seconds, seconds / 2 if scenario == "busy halfway" else None)


def run(workloads: tuple[str, ...] = tuple(WORKLOADS), seconds: float = 6.0, repeats: int = 3,
        batch_size: int = 64, progress: Callable[[str], None] = lambda line: None) -> dict:
    """samples/s per workload x scenario x setting (median of `repeats`), with the ratio of the
    automatic choice to the best fixed setting."""
    allowed, why = threads.cores_allowed()
    settings = ["1", str(allowed), "auto"] if allowed > 1 else ["1", "auto"]
    previous = torch.get_num_threads()
    cells = []
    try:
        for name in workloads:
            fresh = _workload(name, batch_size)
            _run(fresh, "1", 1.0, None)  # warm-up: first-touch allocations, lazy inits
            got: dict = {(s, t): [] for s in SCENARIOS for t in settings}
            for r in range(repeats):
                for scenario in SCENARIOS:
                    for setting in settings:
                        progress(f"{name}, {scenario}, {setting} thread(s), repeat {r + 1}")
                        got[scenario, setting].append(_cell(fresh, setting, seconds, scenario))
            for scenario in SCENARIOS:
                medians = {t: sorted(v)[len(v) // 2] for (s, t), v in got.items()
                           if s == scenario}
                best = max(v for t, v in medians.items() if t != "auto")
                cells.append({"workload": name, "scenario": scenario, "samples_per_s": medians,
                              "auto_vs_best_fixed": medians["auto"] / best})
    finally:
        torch.set_num_threads(previous)
    return {"cores": allowed, "cores_why": why, "seconds": seconds, "repeats": repeats,
            "batch_size": batch_size, "settings": settings, "cells": cells,
            "target": 0.85, "met": all(c["auto_vs_best_fixed"] >= 0.85 for c in cells)}


def format_table(result: dict) -> str:
    settings = result["settings"]
    names = [f"{t} thr" if t != "auto" else "auto" for t in settings]
    lines = [f"samples/s, median of {result['repeats']} interleaved runs of "
             f"{result['seconds']:g} s, batch {result['batch_size']} ({result['cores_why']})",
             f"{'workload':<14} {'scenario':<13} " + " ".join(f"{n:>9}" for n in names)
             + "  auto/best"]
    for c in result["cells"]:
        values = " ".join(f"{c['samples_per_s'][t]:>9.0f}" for t in settings)
        lines.append(f"{c['workload']:<14} {c['scenario']:<13} {values}  "
                     f"{c['auto_vs_best_fixed']:>8.2f}")
    lines.append(f"target: auto >= {result['target']}x the best fixed setting in every cell: "
                 f"{'met' if result['met'] else 'NOT met'}")
    return "\n".join(lines)
