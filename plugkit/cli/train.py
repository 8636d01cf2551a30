"""`plugkit train`: a thin wrapper around plugkit.training (and torchrun for --nproc)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer


def train(
    family: Annotated[str | None, typer.Argument(
        help="A family from `plugkit list` (with --resume: the run's own, may be left out).")
    ] = None,
    data: Annotated[str | None, typer.Option(
        help="A built-in dataset (`plugkit datasets`) or a path; default: the family's own.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/FAMILY-DATA).")
                   ] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Passes over the training data \\[default: the family's, 10 for most; a resumed "
             "run's own].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Samples per step \\[default: 64, or the family's for the data's kind].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random stream \\[default: 0].")
                    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    option: Annotated[list[str] | None, typer.Option(
        "-o", "--option", help="A family option key=value (repeatable; see `plugkit info`).")
    ] = None,
    modality: Annotated[str | None, typer.Option(help="Force image/table/text/sequence.")
                        ] = None,
    image_size: Annotated[int | None, typer.Option(
        help="Resize images to this square size (default: their own size when all agree, "
             "else their median short side, at most 64).")
                          ] = None,
    window: Annotated[int | None, typer.Option(
        help="Cut one long series (rows = time steps) into every window of this length.")
    ] = None,
    max_length: Annotated[int | None, typer.Option(
        help="Text: cut lines longer than this into consecutive windows of this many "
             "characters, as char-rnn reads a long text \\[default: 256].")] = None,
    max_time: Annotated[float | None, typer.Option(
        help="Stop cleanly after this many seconds (resumable).")] = None,
    patience: Annotated[int | None, typer.Option(
        help="Stop after this many epochs without a lower validation loss.")] = None,
    val_fraction: Annotated[float | None, typer.Option(
        help="Share of the data held out for validation (and `plugkit eval`) \\[default: 0.1].")
    ] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out with its own data and settings (run.json); only "
             "--epochs, --max-time, --patience, --threads, --nproc and --device may change.")
    ] = False,
    threads: Annotated[int | None, typer.Option(
        help="torch's threads per process (or PLUGKIT_THREADS); default: chosen from the free "
             "cores and re-checked while training (`plugkit doctor` shows the choice).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per epoch.")] = False,
    nproc: Annotated[int, typer.Option(help="Data-parallel processes on this machine (spawned "
                                       "through torch.distributed.run; --batch-size is the "
                                       "global batch).")] = 1,
    dp_epsilon: Annotated[float | None, typer.Option(
        help="Train with differential privacy (DP-SGD, or the family's own mechanism: aim's "
             "noisy marginals; Opacus: pip install 'plugkit\\[privacy]'), spending at most this "
             "epsilon (docs/privacy.md).",
        rich_help_panel="Privacy")] = None,
    dp_delta: Annotated[float | None, typer.Option(
        help="The delta of (epsilon, delta)-DP \\[default: min(1e-5, 1/(10 n))].",
        rich_help_panel="Privacy")] = None,
    dp_clip: Annotated[float, typer.Option(
        help="Each record's gradient is clipped to this norm.", rich_help_panel="Privacy")
    ] = 1.0,
    dp_secure_rng: Annotated[bool, typer.Option(
        help="Draw DP-SGD's noise in Opacus' secure mode from a generator seeded by the OS's "
             "entropy, not --seed (a resumed run is then not bit-exact).",
        rich_help_panel="Privacy")] = False,
) -> None:
    """Train a model family on a dataset; writes a run directory."""
    from plugkit import training

    config = training.TrainConfig(
        family=family, data=data, out=out, epochs=epochs, batch_size=batch_size, seed=seed,
        device=device, options=option or [], modality=modality, image_size=image_size,
        window=window, max_time=max_time, patience=patience, resume=resume,
        val_fraction=val_fraction, threads=threads, max_length=max_length,
        dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_clip=dp_clip, dp_secure_rng=dp_secure_rng)
    if nproc != 1:
        _spawn(nproc, config, as_json)
    epochs, ends_itself = _progress_plan(config, epochs)
    # a family that ends itself has epochs as a cap only: no honest estimate
    time_left = _time_left(epochs, max_time) if not ends_itself else (lambda epoch: "")
    of = f" of at most {epochs}" if ends_itself else f"/{epochs}"  # "epoch 3/10"

    trained: list[int] = []  # the epochs this session finished

    def report(row: dict) -> None:
        trained.append(row["epoch"])
        if as_json:
            typer.echo(json.dumps(row))
        else:
            losses = "  ".join(f"{k} {v:.4g}" for k, v in row.items()
                               if k not in ("epoch", "step", "samples_per_s", "threads"))
            typer.echo(f"epoch {row['epoch']}{of}  {losses}  "
                       f"{row['samples_per_s']:.0f} samples/s, {_threads(row['threads'])}"
                       f"{time_left(row['epoch'])}")

    if as_json:
        run_dir = training.train(config, report)
    elif not sys.stdout.isatty():  # a pipe or a log file gets plain lines
        run_dir = training.train(config, report, _progress_lines(of))
    else:
        with _progress_bar(of, _rows_per_step(config)) as on_step:
            run_dir = training.train(config, report, on_step)
    if not as_json and os.environ.get("RANK", "0") == "0":  # one line, not one per process
        typer.echo(_last_line(run_dir, nothing_to_do=resume and not trained))


def _progress_plan(config, epochs: int | None) -> tuple[int, bool]:
    """For the progress lines: the epochs the run trains to (--epochs, a resumed run's own, or
    its family's default, as plugkit.training settles them), and whether its family ends
    training itself (Family.finished: aim, when its budget is spent), so that those epochs say
    nothing of how long it will take."""
    from plugkit import plugins, rundir
    from plugkit.errors import PlugkitError
    from plugkit.family import Family

    record = None
    if config.resume and config.out is not None and (config.out / rundir.RUN_JSON).exists():
        record = rundir.read(config.out)
    name = config.family or (record or {}).get("family")
    try:
        cls = plugins.get(name) if name is not None else None
    except PlugkitError:  # an unknown or broken family: training says so, in one line
        cls = None
    if epochs is None:
        epochs = record["epochs"] if record else cls.default_epochs if cls else 10
    return epochs, cls is not None and cls.finished is not Family.finished


def _time_left(epochs: int, max_time: float | None):
    """After each epoch, how long the rest of the run will take at the pace of the epochs
    since the first (after the first: of the first, setup included, so it errs long), or
    until --max-time stops it: said from the first epoch on, not left to be guessed."""
    import time

    began, first = time.monotonic(), []  # first: (epoch, time) of the first report

    def left(epoch: int) -> str:
        now = time.monotonic()
        first[:] = first or [epoch, now]  # a resumed run starts past epoch 1
        done, since = (epoch - first[0], now - first[1]) if epoch > first[0] else (1, now - began)
        elapsed = now - began
        seconds = (epochs - epoch) * since / done
        if max_time is not None:
            seconds = min(seconds, max(max_time - elapsed, 0.0))
        if seconds < 1:
            return ""
        shown = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
        return f"; about {shown} left" + (" (--max-time)" if max_time is not None and
                                           seconds >= max_time - elapsed - 1e-9 else "")

    return left


def _threads(count: int) -> str:
    return f"{count} thread{'s' * (count != 1)}"


def _rows_per_step(config) -> Callable[[], int]:
    """For the progress bar's samples/s: the batch size given, or else the run's own, read from
    its run.json once the first step has run (a resumed run's, or the one a fresh run settled
    with its data's modality: Family.batch_sizes)."""
    from plugkit import rundir, training

    known: list[int] = [config.batch_size] if config.batch_size else []

    def size() -> int:
        if not known:
            try:
                known.append(int(rundir.read(training._run_dir(config))["batch_size"]))
            except Exception:  # never fails the run: the bar shows steps' rows as 64 each
                known.append(training.BATCH_SIZE)
        return known[0]

    return size


def _say_unreleased(record: dict) -> None:
    from plugkit import privacy

    for line in privacy.unreleased_notes(record):
        typer.echo(line)


def _last_line(run_dir: Path, nothing_to_do: bool = False) -> str:
    """Says how the run ended: done, or stopped by --max-time and resumable; or, for a resumed
    run that had already finished (`nothing_to_do`), how to train it further."""
    from plugkit import rundir

    record = rundir.read(run_dir)
    spent = record.get("privacy")
    if spent is not None:  # said first: what the user will quote when sharing the samples
        how = f"in {spent['steps']:,} steps of DP-SGD (noise multiplier " \
              f"{spent['plan']['noise']:.3g})" if "steps" in spent else \
              f"by {record['family']}'s own mechanism (zCDP rho {spent['rho']:.3g} of " \
              f"{spent['plan']['rho']:.3g})"
        typer.echo(f"privacy: ({spent['epsilon']:.3g}, {spent['delta']:.2g})-DP spent "
                   f"(of epsilon {spent['target']['epsilon']:g}), {how}")
        _say_unreleased(record)
    from plugkit import training

    for line in [] if nothing_to_do else training.data_notes(record):  # heard when it trained
        typer.echo(line)
    if record.get("status") == "stopped":
        return f"stopped: {record['stopped']}; saved {run_dir}; continue with --resume"
    if record.get("stopped_early"):
        return f"stopped early after epoch {record['stopped_early']} (--patience); " \
               f"saved {run_dir}"
    if nothing_to_do:
        from plugkit import checkpoint

        done = checkpoint.load_state(run_dir)["loop"]["epoch"]
        return f"{run_dir} has trained {done} epochs, which --epochs {record['epochs']} " \
               f"does not exceed: nothing trained (--resume --epochs N trains on to epoch N)"
    return f"saved {run_dir}"


def _spawn(nproc: int, config, as_json: bool) -> None:
    """Runs this same training as `python -m torch.distributed.run --nproc-per-node N -m
    plugkit train ...` and exits with its status (plain torchrun works the same way)."""
    from plugkit.errors import UsageError

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if "WORLD_SIZE" in os.environ:
        raise UsageError("--nproc inside torchrun: torchrun already started the processes")
    args = [config.family] if config.family else []
    args += ["--device", config.device]
    for flag, value in (("--epochs", config.epochs), ("--data", config.data),
                        ("--out", config.out), ("--batch-size", config.batch_size),
                        ("--seed", config.seed), ("--val-fraction", config.val_fraction),
                        ("--threads", config.threads),
                        ("--modality", config.modality), ("--image-size", config.image_size),
                        ("--window", config.window), ("--max-length", config.max_length),
                        ("--max-time", config.max_time), ("--patience", config.patience),
                        ("--dp-epsilon", config.dp_epsilon), ("--dp-delta", config.dp_delta),
                        ("--dp-clip", config.dp_clip if config.dp_clip != 1.0 else None)):
        args += [flag, str(value)] if value is not None else []
    for pair in config.options:
        args += ["-o", pair]
    args += ["--resume"] * config.resume + ["--dp-secure-rng"] * config.dp_secure_rng
    args += ["--json"] * as_json
    from plugkit.distributed import launch

    raise typer.Exit(launch(nproc, ["train", *args]))


PROGRESS_EVERY_S = 30.0  # a pipe or a log: a line at most this often inside an epoch


def _progress_lines(of: str):
    """For a pipe or a log: a plain line at most every PROGRESS_EVERY_S seconds inside a long
    epoch, so a first epoch of minutes is not minutes of silence."""
    import time

    last = [time.monotonic()]

    def on_step(epoch: int, position: int, steps: int, losses: dict) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S and position < steps:
            last[0] = time.monotonic()
            shown = "  ".join(f"{k} {v:.4g}" for k, v in losses.items())
            typer.echo(f"epoch {epoch + 1}{of}  step {position}/{steps}  {shown}")

    return on_step


@contextlib.contextmanager
def _progress_bar(of: str, batch_size: Callable[[], int]) -> Iterator:
    """A rich progress bar over the current epoch: step, losses, samples/s and ETA."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("epoch {task.fields[epoch]}" + of), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[losses]}"),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch=1, losses="", rate="")
        epoch_start = {"epoch": -1, "time": 0.0, "position": 0}

        def on_step(epoch: int, position: int, steps: int, losses: dict) -> None:
            if epoch != epoch_start["epoch"]:
                epoch_start.update(epoch=epoch, time=time.monotonic(), position=position - 1)
            elapsed = max(time.monotonic() - epoch_start["time"], 1e-9)
            rate = (position - epoch_start["position"]) * batch_size() / elapsed
            bar.update(task, completed=position, total=steps, epoch=epoch + 1,
                       losses="  ".join(f"{k} {v:.4g}" for k, v in losses.items()),
                       rate=f"{rate:.0f} samples/s")

        yield on_step
