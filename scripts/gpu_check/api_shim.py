"""gpu-check's stand-in for the plugkit command, for a Python without typer (the CLI) or rich
(its tables).

The GPU machine brings its own Python and torch and has no package registry, so typer and rich
may be missing there; the check must still train, sample and bench. This calls the library
functions the CLI's commands wrap. It knows only the commands gpu-check runs, with the same
subcommands and flags; output as with --json:

    python api_shim.py doctor [--require-native] [--require-cuda-build]
    python api_shim.py bench kernels [--device D] [--json] [--quick] [--no-compile]
    python api_shim.py train FAMILY --data DATA --out RUN [--epochs N] [--device D] [-o K=V]
                                    [--resume] [--json]
    python api_shim.py sample RUN [--n N | --per-class N] --out FILE [--seed S]

Exit codes as the CLI's: a PlugkitError exits with its own code.
"""
import argparse
import dataclasses
import json
import sys
import types
from pathlib import Path


def stub_rich():
    """plugkit.bench imports rich for its table; --json never draws one."""
    try:
        import rich.box  # noqa: F401
        import rich.table  # noqa: F401
    except ImportError:
        rich, box, table = (types.ModuleType(n) for n in ("rich", "rich.box", "rich.table"))
        box.SIMPLE_HEAD = None

        class Table:
            def __init__(self, *args, **kwargs):
                raise RuntimeError("rich is not installed")

        table.Table, rich.box, rich.table = Table, box, table
        sys.modules.update({"rich": rich, "rich.box": box, "rich.table": table})


def run(a) -> int:
    if a.cmd == "doctor":
        import plugkit.ops

        report = plugkit.ops.backend()
        print(json.dumps(dataclasses.asdict(report), indent=2))
        if a.require_native and report.active != "native":
            print(f"error: the native core is not active: {report.reason}", file=sys.stderr)
            return 1
        if a.require_cuda_build and not report.cuda_compiled:
            print("error: the CUDA kernels were not compiled", file=sys.stderr)
            return 1
        return 0
    if a.cmd == "bench":
        stub_rich()
        from plugkit import bench

        rows = bench.run_kernels(a.quick, a.device, with_compile=a.compile and not a.quick)
        print(bench.main_json(rows))
        return 0
    if a.cmd == "train":
        from plugkit.training import TrainConfig, train

        config = TrainConfig(family=a.family, data=a.data, out=Path(a.out) if a.out else None,
                             epochs=a.epochs, device=a.device, options=a.option, resume=a.resume)
        train(config, lambda row: print(json.dumps(row), flush=True))
        return 0
    from plugkit.sampling import sample

    print(f"wrote {sample(a.run, a.n, a.out, a.seed, per_class=a.per_class)}")
    return 0


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="plugkit (gpu-check API shim)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    doctor = sub.add_parser("doctor")
    doctor.add_argument("--require-native", action="store_true")
    doctor.add_argument("--require-cuda-build", action="store_true")
    bench = sub.add_parser("bench")
    bench.add_argument("what", choices=["kernels"])
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--no-compile", dest="compile", action="store_false")
    train = sub.add_parser("train")
    train.add_argument("family")
    train.add_argument("--data")
    train.add_argument("--out")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--device", default="auto")
    train.add_argument("-o", "--option", action="append", default=[])
    train.add_argument("--resume", action="store_true")
    train.add_argument("--json", action="store_true")
    sample = sub.add_parser("sample")
    sample.add_argument("run")
    sample.add_argument("--n", type=int)
    sample.add_argument("--out")
    sample.add_argument("--per-class", type=int)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from plugkit.errors import PlugkitError

    try:
        return run(args)
    except PlugkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
