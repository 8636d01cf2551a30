"""The epoch loop of one training session, written once for every family.

`LoopState` is where a run stands; every checkpoint stores it (with the weights, optimizers and
RNG streams), so a resumed run continues exactly. `Trainer` runs epochs from it: the data
order of epoch e is a permutation seeded by (seed, e), the family does one step per batch, and
after each epoch the core validates, logs one metrics row and keeps the best weights; it saves
a checkpoint at the end of an epoch every SAVE_EVERY seconds, and when the run ends or stops.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from plugkit import checkpoint, distributed, rundir, threads
from plugkit.errors import PlugkitError
from plugkit.family import Batch, Family
from plugkit.formats import codec

StepHook = Callable[[int, int, int, dict], None]  # (epoch, position, steps_per_epoch, losses)
SAVE_EVERY = 2.0  # seconds between checkpoints at the end of epochs (Trainer._end_epoch)


class Interrupted(PlugkitError):
    """Ctrl-C: the run was saved and can be resumed."""

    exit_code = 130


@dataclass
class LoopState:
    """Where a run stands, as every checkpoint stores it."""

    epoch: int = 0  # epochs finished
    position: int = 0  # steps done in the current epoch
    step: int = 0  # steps done in all
    best: float = math.inf  # the lowest validation loss so far
    since_best: int = 0  # epochs since it
    carried: dict | None = None  # an epoch stopped part-way: its loss sums, rows, seconds
    privacy: list | None = None  # DP-SGD: the accountant's history (plugkit.privacy)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if v is not None or k not in ("carried", "privacy")}

    @classmethod
    def from_dict(cls, state: dict) -> LoopState:
        return cls(**state)  # older checkpoints lack the later fields: their defaults


def batches(x, y, index, batch_size, device, world=None) -> Iterator[Batch]:
    """Batches of `index`; in a multi-process run, this rank's share of each global batch."""
    world = world or distributed.World()
    for begin in range(0, len(index), batch_size):
        start, idx = world.shard(index[begin:begin + batch_size])
        yield Batch(x[idx].to(device), None if y is None else y[idx].to(device), start,
                    min(batch_size, len(index) - begin))


@torch.no_grad()
def validate(family, x, y, batch_size, device) -> float:
    """The family's held-out loss over all of (x, y): per sample, or per unit when val_loss
    returns (sum, count) pairs."""
    total, count = 0.0, 0
    for batch in batches(x, y, torch.arange(len(x)), batch_size, device):
        loss = family.val_loss(batch)
        part, weight = loss if isinstance(loss, tuple) else (loss * len(batch.x), len(batch.x))
        total, count = total + part, count + weight
    return total / count


@dataclass
class Trainer:
    """One session of a run: `run(train, val)` trains from `state` until config.epochs, Ctrl-C,
    `max_time` or `patience`, and returns how it ended, for run.json."""

    family: Family
    config: Any  # training.TrainConfig, settled (every field filled in)
    run_dir: Path
    device: torch.device
    world: distributed.World
    governor: threads.Governor
    state: LoopState
    report: Callable[[dict], None] = lambda row: None
    on_step: StepHook = lambda *_: None
    # under --dp-epsilon: plugkit.privacy.DPSGD (Poisson batches, counted), or the Ledger of a
    # family that spends the budget itself
    private: Any = None
    _best_weights: dict | None = None  # of a new lowest validation loss, not yet written
    _saved_at: float | None = None  # the time of this session's last checkpoint

    def run(self, train_ds, val_ds) -> dict:
        x, y = codec.encode(train_ds)
        val_x, val_y = codec.encode(val_ds)
        started = time.monotonic()
        with _ctrl_c_requests() as stop_requested:
            while self.state.epoch < self.config.epochs and not self.family.finished():
                if not self._epoch(x, y, started, stop_requested):
                    return self._stopped()  # --max-time, part-way through the epoch
                self._end_epoch(val_x, val_y)
                if self.config.patience is not None and \
                        self.state.since_best >= self.config.patience:
                    self._save()
                    return {"status": "done", "stopped_early": self.state.epoch}
                if self.family.finished():
                    break
                if self.state.epoch < self.config.epochs and \
                        self.world.any(self._out_of_time(started)):
                    self._save()
                    return self._stopped()
        self._save()
        return {"status": "done"}

    def _epoch(self, x, y, started: float, stop_requested: Callable[[], bool]) -> bool:
        """Steps through the rest of the current epoch; False when `max_time` cut it short
        (its loss sums are carried in the checkpoint)."""
        config, state = self.config, self.state
        steps = 1 if self.family.whole_batch else math.ceil(len(x) / config.batch_size)
        self._totals: dict[str, float] = {}
        self._seen, self._epoch_start = 0, time.monotonic()
        for batch in self._batches(x, y, steps):
            step_start = time.perf_counter()
            if len(batch.x):
                losses = self.family.train_step(batch)
            else:  # DP-SGD: an empty Poisson batch, whose noise is still released, or this
                losses = {}  # rank's empty share of a batch smaller than the ranks
                self.private.empty_step(self.private.others(self.family.optimizers())
                                        if batch.total else None)
            if self.private is not None and len(batch.x):
                self.private.stepped()
            self.governor.step(time.perf_counter() - step_start)
            for k, v in losses.items():
                self._totals[k] = self._totals.get(k, 0.0) + v * len(batch.x)
            self._seen += len(batch.x)
            state.position += 1
            state.step += 1
            self.on_step(state.epoch, state.position, steps, losses)
            # one agreement across processes per step, so every rank stops at the same step
            diverged, interrupted, out_of_time = self.world.flags(
                not all(math.isfinite(v) for v in losses.values()), stop_requested(),
                self._out_of_time(started))
            if diverged:
                raise PlugkitError(f"training diverged at step {state.step} (loss {losses}); "
                                   f"the last good checkpoint is in {self.run_dir}")
            if interrupted:
                self._carry()
                self._save()
                if self.world.main:
                    rundir.update(self.run_dir, status="interrupted")
                raise Interrupted(f"interrupted at epoch {state.epoch + 1}, step {state.step}; "
                                  f"saved to {self.run_dir}; continue with `resume`")
            if out_of_time:
                break
        if state.position < steps:
            self._carry()
            self._save()
            return False
        return True

    def _batches(self, x, y, steps: int) -> Iterator[Batch]:
        """The rest of the current epoch's batches: slices of a permutation seeded by (seed,
        epoch); under DP-SGD, Poisson batches seeded by (seed, step) instead, as its
        accountant assumes (plugkit.privacy). A multi-process run gives each rank its share."""
        config, state = self.config, self.state
        if self.family.whole_batch:  # one process (training.py checks)
            yield Batch(x.to(self.device), None if y is None else y.to(self.device))
            return
        if self.private is None:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(
                config.seed * 1_000_003 + state.epoch))
            yield from batches(x, y, order[state.position * config.batch_size:],
                               config.batch_size, self.device, self.world)
            return
        from plugkit import privacy

        for step in range(state.step, state.step + steps - state.position):
            rows = privacy.poisson_rows(len(x), self.private.plan.sample_rate,
                                        config.seed * 1_000_003 + step)
            start, mine = self.world.shard(rows)
            yield Batch(x[mine].to(self.device), None if y is None else y[mine].to(self.device),
                        start, len(rows))

    def _end_epoch(self, val_x, val_y) -> None:
        """Validates, logs the epoch's row (its whole epoch, carried parts included), keeps
        the best weights and saves."""
        state = self.state
        totals, seen, seconds = self._with_carried()
        row = {"epoch": state.epoch + 1, "step": state.step,
               **{k: v / max(seen, 1) for k, v in totals.items()},
               "val_loss": validate(self.family, val_x, val_y, self.config.batch_size,
                                    self.device),
               "samples_per_s": seen / max(seconds, 1e-9), "threads": self.governor.threads}
        state.epoch, state.position = state.epoch + 1, 0
        self._check_finite()
        self._track_best(row["val_loss"])
        if self.world.main:  # logged first: a resume drops rows past the checkpoint it finds
            rundir.append_metrics(self.run_dir, row)
        # a checkpoint after the first epoch, then every SAVE_EVERY seconds, not every epoch:
        # one costs ~10 ms (three files, fsync'd), as much as a whole epoch of a small model. A
        # crash loses the epochs since, which a resume replays exactly; the last epoch, Ctrl-C
        # and --max-time save too
        if self.world.any(self._saved_at is None or
                          time.monotonic() - self._saved_at >= SAVE_EVERY):
            self._save()
        self.report(row)

    def _carry(self) -> None:
        """Keeps an unfinished epoch's loss sums (over every rank) in the checkpoint, so its
        row, written when a resumed session finishes the epoch, covers the whole epoch."""
        totals, seen, seconds = self._with_carried()
        self.state.carried = {"totals": totals, "seen": seen, "seconds": seconds}

    def _with_carried(self) -> tuple[dict[str, float], int, float]:
        totals, seen = self.world.mean(self._totals, self._seen)
        seconds = time.monotonic() - self._epoch_start
        carried, self.state.carried = self.state.carried, None
        if carried:
            totals = {k: v + carried["totals"].get(k, 0.0) for k, v in totals.items()}
            seen, seconds = seen + carried["seen"], seconds + carried["seconds"]
        return totals, seen, seconds

    def _track_best(self, val_loss: float) -> None:
        """Keeps the weights of the lowest validation loss (best.safetensors), for families
        whose validation loss ranks models (not the GAN's: it measures D)."""
        if not self.family.val_loss_ranks_models or self.private is not None:
            return  # under DP no weights are chosen on the records: the last ones count
        improved = val_loss < self.state.best
        if improved:
            self.state.best, self.state.since_best = val_loss, 0
            if self.world.main:  # written with the next checkpoint, just before it
                self._best_weights = checkpoint.snapshot(self.family.modules())
        else:
            self.state.since_best += 1
        self.family.validated(improved)

    def _check_finite(self) -> None:
        """Stops the run when its weights have gone bad (after every epoch, and before every
        save: a NaN or inf is never saved over the last good checkpoint)."""
        if not all(torch.isfinite(p).all() for m in self.family.modules().values()
                   for p in m.parameters()):
            raise PlugkitError(f"training diverged: parameters became NaN or inf by step "
                               f"{self.state.step}; the last good checkpoint is in "
                               f"{self.run_dir}")

    def _save(self) -> None:
        """Checkpoints the run (_check_finite first)."""
        family = self.family
        self._check_finite()
        if self.private is not None:
            self.state.privacy = self.private.history()
        if self.world.main:  # every rank holds the same weights, optimizers and RNG streams
            if self._best_weights is not None:  # first: the checkpoint's `best` names them
                checkpoint.save_weights(self.run_dir, self._best_weights, checkpoint.BEST)
                self._best_weights = None
            checkpoint.save(self.run_dir, family.modules(), family.optimizers(),
                            **self.state.as_dict())
        self._saved_at = time.monotonic()

    def _out_of_time(self, started: float) -> bool:
        limit = self.config.max_time
        return limit is not None and time.monotonic() - started > limit

    def _stopped(self) -> dict:
        """How a run cut by `max_time` ends: resumable, and saying so."""
        state = self.state
        return {"status": "stopped", "stopped": f"--max-time {self.config.max_time:g} s "
                f"reached at epoch {state.epoch + (state.position > 0)}, step {state.step}"}


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
