"""Training a run: its settings (TrainConfig), data, family, device, threads and run directory
are set up here, for a new run or a resumed one (plugkit.resume); plugkit.trainer runs the
epochs. The core owns all of that; a family owns one training step.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from plugkit import (
    checkpoint,
    data,
    distributed,
    options,
    plugins,
    privacy,
    resume,
    rundir,
    threads,
)
from plugkit.errors import PlugkitError, UsageError, out_of_memory
from plugkit.family import DataInfo, Family
from plugkit.formats import sequence_private, text, text_private
from plugkit.trainer import Interrupted, LoopState, StepHook, Trainer
from plugkit.version import __version__

BATCH_SIZE = 64  # rows a step, where neither the user nor the family (batch_sizes) says
# a family's larger batch_sizes entry is cut so that an epoch keeps this many steps (never
# below BATCH_SIZE): on a table of 2,000 rows 256 would leave 8 steps an epoch
MIN_STEPS = 32


@dataclass
class TrainConfig:
    family: str | None  # None only with resume: the run's own
    # a built-in dataset, a path, or in-memory data (plugkit.data.memory); None: the family's
    # default
    data: Any = None
    out: Path | None = None  # the run directory; None: runs/<family>-<data>
    epochs: int | None = None  # None: the family's default_epochs (10 for most)
    # None: the family's for the data's modality (Family.batch_sizes) or BATCH_SIZE, seed 0
    # and val_fraction 0.1 for a new run (resume.DEFAULTS); a resumed run's own values
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
    # differential privacy (plugkit.privacy): DP-SGD spending at most (dp_epsilon, dp_delta)
    dp_epsilon: float | None = None
    dp_delta: float | None = None  # None: min(1e-5, 1 / (10 n))
    dp_clip: float = 1.0  # each record's gradient norm at most this
    dp_secure_rng: bool = False  # noise in Opacus' secure mode, OS-seeded (no bit-exact resume)


def train_from_python(family: str | None, data: Any = None, progress: bool = True,
                      **settings: Any) -> Path:
    """plugkit.train and Run.resume: the settings by name (TrainConfig's fields), an unknown one
    refused with the list; a line per epoch unless progress=False (a notebook shows it)."""
    known = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("family", "data")]
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise UsageError(f"plugkit.train: unknown setting {unknown[0]!r}; settings: "
                         + ", ".join(known + ["progress"]))
    if isinstance(settings.get("options"), dict):  # options={"hidden": 64}, as Python has it
        settings["options"] = [f"{k}={v}" for k, v in settings["options"].items()]
    report = _epoch_line if progress else (lambda row: None)
    return train(TrainConfig(family=family, data=data, **settings), report)


def _epoch_line(row: dict) -> None:
    losses = "  ".join(f"{k} {v:.4g}" for k, v in row.items()
                       if k not in ("epoch", "step", "samples_per_s", "threads"))
    print(f"epoch {row['epoch']}  {losses}", flush=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"`device` must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("`device` cuda: no CUDA device is visible")
    return torch.device(name)


def _check(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "patience"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise UsageError(f"`{name}` must be at least 1, "
                             f"got {getattr(config, name)}")


def _record(config: TrainConfig, cls: type[Family], opts, ds: data.Dataset,
            class_counts: list[int] | None) -> dict:
    entry = plugins.entries()[cls.name]
    return {
        "family": cls.name, "family_version": entry.version, "distribution": entry.distribution,
        "plugkit": __version__, "torch": torch.__version__,
        "options": asdict(opts), "seed": config.seed, "epochs": config.epochs,
        "batch_size": config.batch_size, "val_fraction": config.val_fraction,
        "data": {**resume.data_record(config.data), "modality": ds.modality, "size": len(ds),
                 "meta": ds.meta, "classes": ds.classes, "class_counts": class_counts,
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


def data_notes(record: dict) -> list[str]:
    """What the user should hear of their data when a run ends, one line each (the CLI and
    plugkit.train alike): the table columns its samples can only copy."""
    from plugkit.formats import tabular

    data = record["data"]
    if data["modality"] != "table" or "privacy" in record:  # noisy counts: nothing to tell
        return []
    meta = data["meta"]
    return [f"note: column {name!r} has a different value in each of its {rows:,} rows, as an "
            f"identifier does: samples can only copy its training values (drop it from the "
            f"data before sharing them)" for name, rows in tabular.identifiers(meta["encoding"])] \
        + [f"note: column {d['name']!r} has one value for each {d['of']!r} in every training "
           f"row; samples take it from their {d['of']!r}" for d in meta.get("derived", [])]


def _check_modality(cls: type[Family], spec: str, modality: str | None) -> None:
    if modality is not None and modality not in cls.modalities:
        kinds = ", ".join(cls.modalities[:-1]) + " or " * (len(cls.modalities) > 1) + \
            cls.modalities[-1]
        hint = {"image": " (an array of windows [N, T, F] is read as images: give "
                         "--modality sequence)",
                "table": " (a series in a table: --window LENGTH cuts it into windows)"}
        hint = hint.get(modality, "") if "sequence" in cls.modalities else ""
        raise UsageError(f"family {cls.name} takes {kinds} data, "
                         f"but {spec} is {modality}{hint}")


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
    previous = rundir.read(run_dir) if config.resume else None
    config = resume.settle(config, previous)
    cls = plugins.get(config.family)
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=cls.default_epochs)
    budget = _budget(config, cls)
    if config.data is None:
        if cls.default_dataset is None:
            raise UsageError(f"family {cls.name} has no default dataset; give `data`")
        config = dataclasses.replace(config, data=cls.default_dataset)
    given = config.options if budget is None else privacy.with_defaults(cls, config.options)
    options.parse(cls.Options, given, cls.name)  # bad options fail before the data loads
    spec = config.data
    in_memory = data.memory.is_memory(spec)
    name = data.memory.NAME if in_memory else spec
    known = None if in_memory else data.builtin.REGISTRY.get(spec)  # known before loading
    if config.window is None:
        _check_modality(cls, name, known.modality if known else None)
    if budget is not None and known is not None:  # before loading; sequences built in are
        _check_private(cls, known.modality, windows=known.modality == "sequence")  # windows
    ds = data.load(spec, config.modality, config.image_size, config.window, config.max_length)
    _check_modality(cls, name, ds.modality)
    given = options.with_defaults(cls.modality_options.get(ds.modality, {}), given)
    opts = options.parse(cls.Options, given, cls.name)
    if config.batch_size is None:  # a fresh run (a resumed one has its own)
        config = dataclasses.replace(config, batch_size=_batch_size(cls, ds))
    if budget is not None and ds.modality == "text":  # a record is a line, and one row
        ds.x = text_private.lines(ds.x, config.max_length or text.MAX_LENGTH)
    world, device = distributed.init(pick_device(config.device))
    if cls.whole_batch and world.size > 1:
        raise UsageError(f"{cls.name} fits the whole table in one process: not with `nproc`")
    train_ds, val_ds = data.split(ds, config.val_fraction, config.seed)
    plan = None
    if budget is not None:
        _check_private(cls, ds.modality, windows=config.window is not None)
        plan = _plan(ds, budget.settled(len(ds)), len(train_ds), config, previous)
        if ds.modality == "table":
            encoding = _private_encoding(ds, plan, config.seed, previous)
            for part in (ds, train_ds, val_ds):  # every column from the noisy histograms:
                part.meta["encoding"], part.meta["derived"] = encoding, []  # none derived
        if ds.modality == "text":
            meta = _private_text_meta(ds, plan, config, previous)
            for part in (ds, train_ds, val_ds):
                part.x, part.meta = text_private.keep(part.x, meta["vocab"]), dict(meta)
        if ds.modality == "sequence":  # standardized by noisy moments, without bounds
            moments = _private_moments(ds, plan, config.seed, previous)
            for part in (ds, train_ds, val_ds):  # nor the windows' spread: read from every one
                part.meta = {k: v for k, v in part.meta.items()
                             if k not in ("bounds", "window_spread")} | moments
    elif previous is not None and ds.modality == "table":
        stored = previous["data"]["meta"]  # the encoding it trained on, not one a later
        for part in (ds, train_ds, val_ds):  # plugkit fits to the same data differently
            part.meta["encoding"], part.meta["derived"] = stored["encoding"], \
                stored.get("derived", [])
    torch.manual_seed(config.seed)
    family = cls(opts, DataInfo(ds.modality, ds.meta, ds.classes, plan is not None), device)
    if config.patience is not None and not family.val_loss_ranks_models:
        raise UsageError(f"`patience`: {cls.name}'s validation loss does not rank its "
                         f"{ds.modality} models, so it cannot stop early on it")
    loop = {"epoch": 0, "position": 0, "step": 0}
    existed = run_dir.exists()  # a folder of the user's: a failure removes only plugkit's files
    if previous is None:
        counts = _class_counts(ds) if plan is None else _private_counts(ds, plan, config.seed)
        record = _record(config, cls, opts, ds, counts)
        rundir.create(run_dir, record, write=False)  # every rank checks
        world.barrier()
        if world.main:
            rundir.create(run_dir, record)
    else:
        state = checkpoint.resume(run_dir, family.modules())
        for name, optimizer in family.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])
        checkpoint.set_rng_state(state["rng"])
        loop = state["loop"]
        if world.main:  # what a crash left: rows logged past the checkpoint, staged files
            rundir.truncate_metrics(run_dir, loop["step"])
            checkpoint.remove_staged(run_dir)
            rundir.update(run_dir, status="training", epochs=config.epochs, stopped=None,
                        stopped_early=None)
    private = None
    if plan is not None and cls.private_mechanism:
        private = family.ledger = privacy.Ledger(plan, loop.get("privacy"))
    elif plan is not None:
        private = privacy.DPSGD(family, plan, config.batch_size, loop.get("privacy"),
                                world.size)
    if private is not None:
        if previous is None and world.main:
            rundir.update(run_dir, privacy=private.spent())
    # DP-SGD's optimizers add up the ranks' clipped sums themselves
    world.average_gradients(family.optimizers() if not isinstance(private, privacy.DPSGD)
                            else private.others(family.optimizers()))
    if not world.main:  # only the main rank reports
        report, on_step = (lambda row: None), None
    trainer = Trainer(family, config, run_dir, device, world, threads.Governor(choice),
                      LoopState.from_dict(loop), report, on_step or (lambda *_: None), private)
    try:
        status = trainer.run(train_ds, val_ds)
    except BaseException as exc:
        if world.main:
            _failed(run_dir, fresh=previous is None, existed=existed, error=exc)
        if out_of_memory(exc):
            raise PlugkitError(f"out of memory training {cls.name} at step "
                               f"{trainer.state.step + 1}"
                               f" (batch size {config.batch_size}): lower `batch_size` or the "
                               f"model's size (see `plugkit info {cls.name}`)"
                               + _kept(run_dir, previous is None)) from None
        raise
    if private is not None:
        status["privacy"] = private.spent()
    if world.main:
        rundir.update(run_dir, **status)
    distributed.finish(world)
    return run_dir


def _batch_size(cls: type[Family], ds: data.Dataset) -> int:
    """A fresh run's rows a step when the user gives none: the family's for the modality, or
    BATCH_SIZE; a larger one no larger than leaves MIN_STEPS steps an epoch."""
    wanted = cls.batch_sizes.get(ds.modality, BATCH_SIZE)
    if wanted <= BATCH_SIZE:
        return wanted
    return max(BATCH_SIZE, min(wanted, len(ds) // MIN_STEPS))


def _budget(config: TrainConfig, cls: type[Family]) -> privacy.Budget | None:
    """The privacy budget asked for, checked before any data is read; None without DP."""
    if config.dp_epsilon is None:
        for name in ("dp_delta", "dp_secure_rng"):
            if getattr(config, name):
                raise UsageError(f"`{name}` is for private training: give `dp_epsilon` too")
        if config.dp_clip != 1.0:
            raise UsageError("`dp_clip` is for private training: give `dp_epsilon` too")
        return None
    budget = privacy.Budget(config.dp_epsilon, config.dp_delta, config.dp_clip,
                            config.dp_secure_rng)
    budget.check()
    if not cls.private:
        raise UsageError(f"{cls.name} does not train privately (`dp_epsilon`); families that "
                         "do: see `plugkit list`")
    if config.patience is not None:
        raise UsageError("`patience` stops on the validation loss, which reads the records: "
                         "not under `dp_epsilon`")
    if cls.private_mechanism and config.dp_clip != 1.0:
        raise UsageError(f"{cls.name} spends its budget on its own mechanisms, not on "
                         "clipped gradients: `dp_clip` does not apply")
    privacy.require_opacus()
    return budget


def _check_private(cls: type[Family], modality: str, windows: bool = False) -> None:
    if modality not in cls.private:
        raise UsageError(f"{cls.name} trains {' and '.join(cls.private)} data privately, "
                         f"not {modality} (`dp_epsilon`)")
    if windows:
        raise UsageError("`dp_epsilon` takes each sequence for one record, but these are "
                         "overlapping windows of one series, so one time step is in many "
                         "records: give independent sequences [N, T, F] (an .npy file)")


def _plan(ds: data.Dataset, budget: privacy.Budget, records: int, config: TrainConfig,
          previous: dict | None) -> privacy.Plan:
    """How the run spends its budget: a table's histograms are its columns, an image model's
    its class counts (the default class mix of its samples); a resumed run keeps its plan."""
    if previous is not None:
        return privacy.Plan.from_dict(previous["privacy"]["plan"])
    if ds.modality == "table":
        kinds = ds.meta["columns"].values()
        histograms, categorical = len(kinds), sum(k != "numeric" for k in kinds)
    elif ds.modality == "text":  # a line counts for up to CHARS_PER_LINE characters
        histograms = categorical = text_private.CHARS_PER_LINE
    elif ds.modality == "sequence":  # each feature's, and the class counts
        histograms = ds.meta["features"] * sequence_private.HISTOGRAMS_PER_FEATURE + \
            (_class_counts(ds) is not None)
        categorical = 0
    else:
        histograms, categorical = int(_class_counts(ds) is not None), 0
    if plugins.get(config.family).private_mechanism:
        return privacy.plan_own(budget, histograms, categorical)
    return privacy.plan(budget, histograms, categorical, records, config.batch_size,
                        config.epochs)


def _private_encoding(ds: data.Dataset, plan: privacy.Plan, seed: int,
                      previous: dict | None) -> list[dict]:
    """A table's encoding from its noisy histograms (plugkit.formats.tabular_private), fitted
    once: a resumed run keeps its own (a second fit would spend the budget again)."""
    if previous is not None:
        return previous["data"]["meta"]["encoding"]
    import numpy as np

    from plugkit.formats import tabular_private

    return tabular_private.fit(ds.x, ds.meta["columns"], plan.histogram_noise, plan.threshold,
                               np.random.default_rng(plan.budget.noise_seed(seed)))


def _private_text_meta(ds: data.Dataset, plan: privacy.Plan, config: TrainConfig,
                       previous: dict | None) -> dict:
    """A text's meta under DP (plugkit.formats.text_private): the vocabulary from noisy
    counts, the declared max_length; fitted once, as a table's encoding."""
    if previous is not None:
        return previous["data"]["meta"]
    import numpy as np

    listed = text_private.vocab(ds.x, plan.histogram_noise, plan.threshold,
                                np.random.default_rng(plan.budget.noise_seed(config.seed)))
    return {"vocab": listed, "max_length": config.max_length or text.MAX_LENGTH}


def _private_moments(ds: data.Dataset, plan: privacy.Plan, seed: int,
                     previous: dict | None) -> dict:
    """Sequences' means and stds from noisy histograms (plugkit.formats.sequence_private),
    fitted once, as a table's encoding; noise of its own, apart from the class counts'."""
    if previous is not None:
        return {k: previous["data"]["meta"][k] for k in ("mean", "std", "private")}
    import numpy as np

    return sequence_private.moments(ds.x, plan.histogram_noise, np.random.default_rng(
        plan.budget.noise_seed([seed, 2])))


def _private_counts(ds: data.Dataset, plan: privacy.Plan, seed: int) -> list[int] | None:
    """Under DP the class mix that sampling draws by default comes from the noisy counts of
    the plan; a table's labels are not used, so not kept."""
    counts = _class_counts(ds)
    if counts is None or ds.modality == "table":
        return None
    import numpy as np

    noisy = np.asarray(counts) + np.random.default_rng(plan.budget.noise_seed(seed)).normal(
        0.0, plan.histogram_noise, len(counts))
    return np.maximum(np.round(noisy), 1).astype(int).tolist()


def _run_dir(config: TrainConfig) -> Path:
    if config.out is not None:
        return Path(config.out)
    if config.family is None:
        raise UsageError("`resume` without a FAMILY needs `out` RUN")
    spec = config.data if config.data is not None else \
        plugins.get(config.family).default_dataset
    if spec is None:
        raise UsageError(f"family {config.family} has no default dataset; give `data`")
    name = "data" if data.memory.is_memory(spec) else Path(spec).stem
    return Path(f"runs/{config.family}-{name}")


def _failed(run_dir: Path, fresh: bool, existed: bool, error: BaseException) -> None:
    """A fresh run that fails before its first checkpoint leaves nothing behind (a folder that
    was there before keeps everything but plugkit's files); otherwise the last checkpoint
    stays, to be continued with `resume`."""
    if isinstance(error, Interrupted) or not (run_dir / rundir.RUN_JSON).exists():
        return
    if not fresh or (run_dir / checkpoint.STATE).exists():
        rundir.update(run_dir, status="failed")
    elif not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        for name in (rundir.RUN_JSON, rundir.METRICS, checkpoint.WEIGHTS, checkpoint.PREVIOUS,
                     checkpoint.BEST):
            (run_dir / name).unlink(missing_ok=True)
        checkpoint.remove_staged(run_dir)


def _kept(run_dir: Path, fresh: bool) -> str:
    if (run_dir / checkpoint.STATE).exists():
        return f"; the last checkpoint is kept in {run_dir} (`resume` continues it)"
    return "; nothing was written" if fresh else ""
