"""When a peer writes its samples along the way, and how long it had trained by then.

Every peer script uses one `Points`: the clock starts when the script starts (so the peer's
own data loading and preprocessing count) and stops while samples are drawn and written, so
the seconds are training seconds only. A point is due at the end of an epoch (or a step)
once `fractions` of the budget -- epochs or seconds -- have passed; the last one ends training.
Each point is an entry of OUT/points.json: seconds, epoch (epochs, or steps, trained by then)
and the samples' file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # four points: each costs a plugkit eval (~25-50 s on adult)


class Points:
    def __init__(self, out: Path, start: float, *, epochs: int | None = None,
                 seconds: float | None = None, fractions=FRACTIONS) -> None:
        if (epochs is None) == (seconds is None):
            raise SystemExit("a peer's budget is epochs or seconds, not both")
        self.start, self.paused = start, 0.0  # start: time.monotonic() at the script's top
        self.out, self.epochs, self.seconds = out, epochs, seconds
        budget = epochs if epochs is not None else seconds
        # epoch budgets: whole epochs, each point at least one epoch after the one before
        marks = [f * budget for f in fractions]
        self.marks = sorted({max(1, round(m)) for m in marks}) if epochs else marks
        self.rows: list[dict] = []
        self.next = 0  # the first mark not passed yet
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.start - self.paused

    def due(self, epoch: int) -> bool:
        """Whether a point is due now, after `epoch` epochs (or steps) of training."""
        return not self.done() and self._progress(epoch) >= self.marks[self.next]

    def done(self) -> bool:
        return self.next == len(self.marks)

    def _progress(self, epoch: int) -> float:
        return epoch if self.epochs is not None else self.elapsed()

    def write(self, epoch: int, save) -> None:
        """Calls save(path_stem) to write the samples (and whatever else), off the clock."""
        seconds = self.elapsed()
        # one point for every mark passed (start-up can pass several of a time budget)
        while not self.done() and self._progress(epoch) >= self.marks[self.next]:
            self.next += 1
        begin = time.monotonic()
        stem = self.out / f"point{len(self.rows)}"
        file = save(stem)
        self.rows.append({"seconds": seconds, "epoch": epoch, "file": str(file)})
        (self.out / "points.json").write_text(json.dumps(self.rows, indent=1))
        self.paused += time.monotonic() - begin
        print(f"point {len(self.rows)}: epoch {epoch}, {seconds:.1f} s", flush=True)

    def loop(self, count: int, save):
        """A peer's epoch loop `range(count)` with the points in it: between two epochs, a
        point when one is due (ending the loop after the last); after all of them, the last
        point (an epoch budget, or every epoch within a time budget)."""
        for epoch in range(count):
            if epoch and self.due(epoch):
                self.write(epoch, save)
                if self.done():
                    return
            yield epoch
        self.write(count, save)


class same_rng:
    """Drawing samples mid-training must not move the training's random streams (torch,
    numpy, random): the peer then trains exactly as it would without the points."""

    def __enter__(self):
        import random

        import numpy as np
        import torch

        self.states = torch.get_rng_state(), np.random.get_state(), random.getstate()

    def __exit__(self, *exc):
        import random

        import numpy as np
        import torch

        torch.set_rng_state(self.states[0])
        np.random.set_state(self.states[1])
        random.setstate(self.states[2])
