"""plugkit's fused lstm_layer against torch.nn.LSTM, forward + backward, side by side (issue 14).

    .venv/bin/python benchmarks/lstm_layer.py            # 1 and 2 threads, the shapes below
    .venv/bin/python benchmarks/lstm_layer.py --threads 1 --repeats 31

Each shape times the two alternately in one process (median of --repeats calls each), so drift
on a shared machine hits both alike. Each thread count runs in its own process, because torch
and MKL read the count once. Prints a markdown table for docs/benchmarks.md, with the CPU:
ratios move between CPUs (docs/benchmarks.md), so state the CPU with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# (T, B, I, H): issue 14's two shapes, then the lstm family's defaults on names (batch 64, lines
# of ~16 characters, a 64-wide embedding into the first of three 256-wide layers).
SHAPES = [(64, 64, 128, 256), (32, 64, 64, 256), (16, 64, 64, 256), (16, 64, 256, 256)]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_pair(steps: int, batch: int, inputs: int, hidden: int,
              repeats: int) -> tuple[float, float]:
    """Median ms of lstm_layer and of nn.LSTM, forward + backward, timed alternately."""
    import torch

    import plugkit.ops as ops

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(inputs, hidden)
    x = torch.randn(steps, batch, inputs, requires_grad=True)
    h0, c0 = torch.zeros(batch, hidden), torch.zeros(batch, hidden)
    grad_y = torch.randn(steps, batch, hidden)

    def fused():
        y, _ = ops.lstm_layer(x, h0, c0, *lstm.parameters())
        y.backward(grad_y)

    def reference():
        y, _ = lstm(x, (h0[None], c0[None]))
        y.backward(grad_y)

    times = {fused: [], reference: []}
    for _ in range(3):
        fused(), reference()  # warm-up: allocator, MKL's buffers, oneDNN's primitive cache
    for _ in range(repeats):
        for fn in (fused, reference):
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    return statistics.median(times[fused]) * 1e3, statistics.median(times[reference]) * 1e3


def measure(threads: int, repeats: int) -> list[dict]:
    """Runs in the child process: both medians at every shape."""
    import torch

    import plugkit.ops as ops

    torch.set_num_threads(threads)
    assert ops.backend().native_loaded, ops.backend().reason  # a fallback timing would mislead
    rows = []
    for shape in SHAPES:
        ours, theirs = time_pair(*shape, repeats)
        rows.append({"shape": "T={} B={} I={} H={}".format(*shape), "threads": threads,
                     "lstm_layer_ms": ours, "nn_lstm_ms": theirs, "ratio": ours / theirs})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.threads[0], args.repeats)))
        return
    rows = []
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(threads),
                              "--repeats", str(args.repeats)], env=env, check=True,
                             capture_output=True, text=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    import torch

    print(f"CPU: {cpu_name()}; torch {torch.__version__}; median of {args.repeats} "
          "forward+backward calls each, alternating\n")
    print("| shape (T, B, I, H) | threads | lstm_layer ms | nn.LSTM ms | lstm_layer / nn.LSTM |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['threads']} | {r['lstm_layer_ms']:.2f} | "
              f"{r['nn_lstm_ms']:.2f} | {r['ratio']:.2f}× |")


if __name__ == "__main__":
    main()
