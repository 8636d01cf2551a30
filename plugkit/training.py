"""The training loop, written once for every family.

The core owns data, device, seeds, batching, validation, checkpoints and the run directory; the
family owns one training step. The data order of epoch e is a permutation seeded by (seed, e),
and the checkpoint records (epoch, position) with every RNG stream and optimizer state, so a
run can continue exactly where it stopped (`resume=True`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from plugkit import checkpoint, data, distributed, options, plugins, resume, runs, threads
from plugkit.data import codec, text
from plugkit.errors import PlugkitError, UsageError, out_of_memory
from plugkit.family import Batch, DataInfo, Family


class Interrupted(PlugkitError):
    """Ctrl-C: the run was saved and can be resumed."""

    exit_code = 130


@dataclass
class TrainConfig:
    family: str | None  # None only with resume: the run's own
    data: str | None = None  # a built-in dataset or a path; None: the family's default
    out: Path | None = None  # the run directory; None: runs/<family>-<data>
    epochs: int = 10
    # None: 64, 0 and 0.1 for a new run (resume.DEFAULTS); a resumed run's own values
    batch_size: int | None = None
    seed: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    options: list[str] = field(default_factory=list)  # "key=value" pairs
    modality: str | None = None
    image_size: int | None = None
    window: int | None = None  # cut one long series into windows of this many steps
    max_length: int | None = None  # text: longer lines become windows (default text.MAX_LENGTH)
    val_fraction: float | None = None  # the share of the data held out for validation
    max_time: float | None = None  # seconds; stops cleanly after the current step
    patience: int | None = None  # stop after this many epochs without a better val_loss
    threads: int | None = None  # torch's threads; None: chosen from the load (plugkit.threads)
    resume: bool = False


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible")
    return torch.device(name)


def _check(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "patience"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, "
                             f"got {getattr(config, name)}")


def _batches(x, y, index, batch_size, device, world=None):
    """Batches of `index`; in a multi-process run, this rank's share of each global batch."""
    world = world or distributed.World()
    for begin in range(0, len(index), batch_size):
        start, idx = world.shard(index[begin:begin + batch_size])
        yield Batch(x[idx].to(device), None if y is None else y[idx].to(device), start,
                    min(batch_size, len(index) - begin))


def _record(config: TrainConfig, cls: type[Family], opts, ds: data.Dataset) -> dict:
    from plugkit import __version__

    entry = plugins.entries()[cls.name]
    return {
        "family": cls.name, "family_version": entry.version, "distribution": entry.distribution,
        "plugkit": __version__, "torch": torch.__version__,
        "options": asdict(opts), "seed": config.seed, "epochs": config.epochs,
        "batch_size": config.batch_size, "val_fraction": config.val_fraction,
        "data": {**resume.data_record(config.data), "modality": ds.modality, "size": len(ds),
                 "meta": ds.meta, "classes": ds.classes, "class_counts": _class_counts(ds),
                 "image_size": config.image_size, "window": config.window,
                 "max_length": config.max_length or (text.MAX_LENGTH if ds.modality == "text"
                                                     else None)},
        "status": "training",
    }


def _class_counts(ds) -> list[int] | None:
    """How many samples each class has: the default mix of a conditional model's samples."""
    if ds.labels is None or ds.classes is None:
        return None
    import numpy as np

    return np.bincount(ds.labels, minlength=len(ds.classes)).tolist()


def _check_modality(cls: type[Family], spec: str, modality: str | None) -> None:
    if modality is not None and modality not in cls.modalities:
        kinds = ", ".join(cls.modalities[:-1]) + " or " * (len(cls.modalities) > 1) + \
            cls.modalities[-1]
        raise UsageError(f"family {cls.name} takes {kinds} data, "
                         f"but {spec} is {modality}")


StepHook = Callable[[int, int, int, dict], None]  # (epoch, position, steps_per_epoch, losses)


def train(config: TrainConfig, report: Callable[[dict], None] = lambda row: None,
          on_step: StepHook | None = None) -> Path:
    """Trains (or resumes) a run; returns its directory.

    `report` gets each epoch's metrics; `on_step`, if given, every step's position and losses
    (the CLI's progress bar). torch's thread count is chosen for the machine's load and kept
    right while training (plugkit.threads), then restored.
    """
    _check(config)
    with threads.using(config.threads) as choice:
        return _train(config, report, on_step, choice)


def _train(config: TrainConfig, report: Callable[[dict], None], on_step: StepHook | None,
           choice: threads.Choice) -> Path:
    run_dir = _run_dir(config)
    previous = runs.read(run_dir) if config.resume else None
    config = resume.settle(config, previous)
    cls = plugins.get(config.family)
    if config.data is None:
        if cls.default_dataset is None:
            raise UsageError(f"family {cls.name} has no default dataset; give --data")
        config = dataclasses.replace(config, data=cls.default_dataset)
    opts = options.parse(cls.Options, config.options, cls.name)
    spec = config.data
    known = data.builtin.REGISTRY.get(spec)  # a built-in's modality is known before loading
    if config.window is None:
        _check_modality(cls, spec, known.modality if known else None)
    ds = data.load(spec, config.modality, config.image_size, config.window, config.max_length)
    _check_modality(cls, spec, ds.modality)
    world, device = distributed.init(pick_device(config.device))
    train_ds, val_ds = data.split(ds, config.val_fraction, config.seed)
    torch.manual_seed(config.seed)
    family = cls(opts, DataInfo(ds.modality, ds.meta, ds.classes), device)
    if config.patience is not None and not family.val_loss_ranks_models:
        raise UsageError(f"--patience: {cls.name}'s validation loss does not rank its "
                         f"{ds.modality} models, so it cannot stop early on it")
    loop = {"epoch": 0, "position": 0, "step": 0}
    existed = run_dir.exists()  # a folder of the user's: a failure removes only plugkit's files
    if previous is None:
        runs.create(run_dir, _record(config, cls, opts, ds), write=False)  # every rank checks
        world.barrier()
        if world.main:
            runs.create(run_dir, _record(config, cls, opts, ds))
    else:
        state = checkpoint.resume(run_dir, family.modules())
        for name, optimizer in family.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])
        checkpoint.set_rng_state(state["rng"])
        loop = state["loop"]
        if world.main:  # what a crash left: rows logged past the checkpoint, staged files
            runs.truncate_metrics(run_dir, loop["step"])
            checkpoint.remove_staged(run_dir)
            runs.update(run_dir, status="training", epochs=config.epochs, stopped=None,
                        stopped_early=None)
    world.average_gradients(family.optimizers())
    if not world.main:  # only the main rank reports
        report, on_step = (lambda row: None), None
    try:
        status = _loop(family, config, run_dir, train_ds, val_ds, device, loop, report,
                       on_step, world, threads.Governor(choice))
    except BaseException as exc:
        if world.main:
            _failed(run_dir, fresh=previous is None, existed=existed, error=exc)
        if out_of_memory(exc):
            raise PlugkitError(f"out of memory training {cls.name} at step {loop['step'] + 1}"
                               f" (batch size {config.batch_size}): lower --batch-size or the "
                               f"model's size (see `plugkit info {cls.name}`)"
                               + _kept(run_dir, previous is None)) from None
        raise
    if world.main:
        runs.update(run_dir, **status)
    distributed.finish(world)
    return run_dir


def _run_dir(config: TrainConfig) -> Path:
    if config.out is not None:
        return Path(config.out)
    if config.family is None:
        raise UsageError("--resume without a FAMILY needs --out RUN")
    spec = config.data or plugins.get(config.family).default_dataset
    if spec is None:
        raise UsageError(f"family {config.family} has no default dataset; give --data")
    return Path(f"runs/{config.family}-{Path(spec).stem}")


def _failed(run_dir: Path, fresh: bool, existed: bool, error: BaseException) -> None:
    """A fresh run that fails before its first checkpoint leaves nothing behind (a folder that
    was there before keeps everything but plugkit's files); otherwise the last checkpoint
    stays, to be continued with --resume."""
    if isinstance(error, Interrupted) or not (run_dir / runs.RUN_JSON).exists():
        return
    if not fresh or (run_dir / checkpoint.STATE).exists():
        runs.update(run_dir, status="failed")
    elif not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        for name in (runs.RUN_JSON, runs.METRICS, checkpoint.WEIGHTS, checkpoint.PREVIOUS,
                     checkpoint.BEST):
            (run_dir / name).unlink(missing_ok=True)
        checkpoint.remove_staged(run_dir)


def _kept(run_dir: Path, fresh: bool) -> str:
    if (run_dir / checkpoint.STATE).exists():
        return f"; the last checkpoint is kept in {run_dir} (--resume continues it)"
    return "; nothing was written" if fresh else ""


def _save(family: Family, run_dir: Path, world: distributed.World, loop: dict) -> None:
    """Checkpoints the run, unless its weights have gone bad: a NaN or inf is never saved
    over the last good checkpoint."""
    if not all(torch.isfinite(p).all() for m in family.modules().values()
               for p in m.parameters()):
        raise PlugkitError(f"training diverged: parameters became NaN or inf by step "
                           f"{loop['step']}; the last good checkpoint is in {run_dir}")
    if world.main:  # every rank holds the same weights, optimizer state and RNG streams
        checkpoint.save(run_dir, family.modules(), family.optimizers(), **loop)


@contextlib.contextmanager
def _ctrl_c_requests() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C only raises a flag that the loop checks between steps, so the saved
    state is never caught half-way through an optimizer step; a second one stops at once."""
    requested: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _loop(family, config, run_dir, train_ds, val_ds, device, loop, report, on_step,
          world, governor) -> dict:
    with _ctrl_c_requests() as stop_requested:
        return _epochs(family, config, run_dir, train_ds, val_ds, device, loop, report,
                       on_step or (lambda *_: None), stop_requested, world, governor)


def _epochs(family, config, run_dir, train_ds, val_ds, device, loop, report, on_step,
            stop_requested, world, governor) -> dict:
    """Runs epochs from `loop` (epoch, position, step; best val_loss and epochs since it; the
    loss sums of an epoch stopped part-way), which every checkpoint stores, so a resumed run
    continues exactly and logs one row per epoch. Returns how it ended, for run.json."""
    x, y = codec.encode(train_ds)
    val_x, val_y = codec.encode(val_ds)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    started = time.monotonic()
    loop = {"best": math.inf, "since_best": 0, **loop}
    while loop["epoch"] < config.epochs:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(
            config.seed * 1_000_003 + loop["epoch"]))
        totals: dict[str, float] = {}
        seen, epoch_start = 0, time.monotonic()
        for batch in _batches(x, y, order[loop["position"] * config.batch_size:],
                              config.batch_size, device, world):
            step_start = time.perf_counter()
            losses = family.train_step(batch)
            governor.step(time.perf_counter() - step_start)
            if world.any(not all(math.isfinite(v) for v in losses.values())):
                raise PlugkitError(f"training diverged at step {loop['step'] + 1} (loss "
                                   f"{losses}); the last good checkpoint is in {run_dir}")
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v * len(batch.x)
            seen += len(batch.x)
            loop["position"] += 1
            loop["step"] += 1
            on_step(loop["epoch"], loop["position"], steps_per_epoch, losses)
            if world.any(stop_requested()):
                _carry(loop, world, totals, seen, epoch_start)
                _save(family, run_dir, world, loop)
                if world.main:
                    runs.update(run_dir, status="interrupted")
                raise Interrupted(f"interrupted at epoch {loop['epoch'] + 1}, step "
                                  f"{loop['step']}; saved to {run_dir}; continue with --resume")
            if world.any(_out_of_time(config, started)):
                break
        if loop["position"] < steps_per_epoch:  # --max-time, part-way through the epoch
            _carry(loop, world, totals, seen, epoch_start)
            _save(family, run_dir, world, loop)
            return _stopped(config, loop)
        totals, seen, seconds = _with_carried(loop, world, totals, seen, epoch_start)
        row = {"epoch": loop["epoch"] + 1, "step": loop["step"],
               **{k: v / max(seen, 1) for k, v in totals.items()},
               "val_loss": validate(family, val_x, val_y, config.batch_size, device),
               "samples_per_s": seen / max(seconds, 1e-9), "threads": governor.threads}
        loop.update(epoch=loop["epoch"] + 1, position=0)
        _track_best(family, run_dir, world, loop, row["val_loss"])
        if world.main:  # logged first: a resume drops rows past the checkpoint it finds
            runs.append_metrics(run_dir, row)
        _save(family, run_dir, world, loop)
        report(row)
        if config.patience is not None and loop["since_best"] >= config.patience:
            return {"status": "done", "stopped_early": loop["epoch"]}
        if loop["epoch"] < config.epochs and world.any(_out_of_time(config, started)):
            return _stopped(config, loop)
    return {"status": "done"}


def _carry(loop, world, totals, seen, epoch_start) -> None:
    """Keeps an unfinished epoch's loss sums (over every rank) in the checkpoint, so its row,
    written when a resumed session finishes the epoch, covers the whole epoch."""
    totals, seen, seconds = _with_carried(loop, world, totals, seen, epoch_start)
    loop["carried"] = {"totals": totals, "seen": seen, "seconds": seconds}


def _with_carried(loop, world, totals, seen, epoch_start):
    totals, seen = world.mean(totals, seen)
    seconds = time.monotonic() - epoch_start
    carried = loop.pop("carried", None)
    if carried:
        totals = {k: v + carried["totals"].get(k, 0.0) for k, v in totals.items()}
        seen, seconds = seen + carried["seen"], seconds + carried["seconds"]
    return totals, seen, seconds


def _stopped(config, loop) -> dict:
    """How a run cut by --max-time ends: resumable, and saying so."""
    return {"status": "stopped", "stopped": f"--max-time {config.max_time:g} s reached at "
            f"epoch {loop['epoch'] + (loop['position'] > 0)}, step {loop['step']}"}


def _track_best(family, run_dir, world, loop, val_loss) -> None:
    """Keeps the weights of the lowest validation loss (best.safetensors), for families whose
    validation loss ranks models (not the GAN's: it measures D)."""
    if not family.val_loss_ranks_models:
        return
    if val_loss < loop["best"]:
        loop.update(best=val_loss, since_best=0)
        if world.main:
            checkpoint.save_weights(run_dir, family.modules(), checkpoint.BEST)
    else:
        loop["since_best"] += 1


def _out_of_time(config: TrainConfig, started: float) -> bool:
    return config.max_time is not None and time.monotonic() - started > config.max_time


@torch.no_grad()
def validate(family, x, y, batch_size, device) -> float:
    """The family's held-out loss over all of (x, y): per sample, or per unit when val_loss
    returns (sum, count) pairs."""
    total, count = 0.0, 0
    for batch in _batches(x, y, torch.arange(len(x)), batch_size, device):
        loss = family.val_loss(batch)
        part, weight = loss if isinstance(loss, tuple) else (loss * len(batch.x), len(batch.x))
        total, count = total + part, count + weight
    return total / count
