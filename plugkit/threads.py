"""How many threads torch computes with: chosen from the machine as it is, not assumed idle.

torch starts one OpenMP thread per core. When another process holds one of those cores, every
parallel region waits for the thread that cannot run, and small ops become 15-200x slower
(measured: the VAE on digits at 152 vs 30,181 samples/s next to a test suite). So every command
that computes chooses the count itself:

- `--threads N`, else PLUGKIT_THREADS=N, else OMP_NUM_THREADS=N: that count, fixed.
- otherwise (auto): the cores this process may use (CPU affinity, capped by a cgroup CPU
  quota), minus those other processes keep busy (from /proc/stat, less this process's own
  time), shared among the data-parallel processes on this machine (LOCAL_WORLD_SIZE).

Training goes further (Governor): the load is read again every CHECK_S seconds, so a
neighbour that starts or stops mid-run changes the count, and whenever more than one thread is
free the two candidates (all free cores, one) are timed on real training steps and the faster
kept: a small model that gains nothing from a second thread keeps one.

Thread counts change float rounding (parallel reductions split differently), so bit-exact
reproduction of a run needs a fixed count (`--threads`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHECK_S = 0.25  # seconds between load checks while training (a /proc/stat read costs ~0.1 ms)
STALE_S = 5.0  # a first reading older than this says nothing about the load now
BUSY_CORE = 0.5  # another process's share of a core that counts the core as taken
ENV = "PLUGKIT_THREADS"


@dataclass(frozen=True)
class Load:
    """CPU time (seconds) spent on the allowed cores in total and by this process, at `at`."""

    at: float
    busy: float
    own: float


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def read_load(cpus: list[int] | None = None) -> Load | None:
    """The busy time of the allowed cores and of this process now; None where /proc is not
    there (not Linux), in which case nothing is known about other processes."""
    cpus = _allowed_cpus() if cpus is None else cpus
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        own_fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cpus}
    busy = 0
    for line in lines:
        name, *values = line.split()
        if name in wanted:  # user nice system idle iowait irq softirq steal ...
            numbers = [int(v) for v in values[:8]]
            busy += sum(numbers) - numbers[3] - numbers[4]  # all but idle and iowait
    own = int(own_fields[11]) + int(own_fields[12])  # utime, stime (fields 14, 15)
    return Load(time.monotonic(), busy / tick, own / tick)


def others_busy(before: Load | None, after: Load | None) -> float:
    """Cores kept busy by other processes between two readings (0 when unknown)."""
    if before is None or after is None or after.at - before.at <= 0:
        return 0.0
    elapsed = after.at - before.at
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / elapsed)


def cores_allowed() -> tuple[int, str]:
    """How many cores this process may use, and why: affinity, capped by a cgroup quota."""
    cpus = len(_allowed_cpus())
    quota = _cgroup_quota()
    if quota is not None and quota < cpus:
        return max(1, math.floor(quota)), f"cgroup CPU quota {quota:g} of {cpus} cores"
    return cpus, f"{cpus} cores in this process's CPU affinity"


def _cgroup_quota() -> float | None:
    """Cores allowed by a cgroup v2 cpu.max or v1 cfs quota; None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


_START = read_load()  # the first reading: the time until the command chooses is the window


@dataclass(frozen=True)
class Choice:
    threads: int
    auto: bool  # chosen from the load (False: fixed by --threads or the environment)
    reason: str
    allowed: int = 1
    busy: int = 0
    share: int = 1


def requested(threads: int | None = None) -> tuple[int | None, str]:
    """A fixed count from `threads`, PLUGKIT_THREADS or OMP_NUM_THREADS (in that order), or
    None for the automatic choice. PLUGKIT_THREADS=auto forces the automatic choice."""
    from plugkit.errors import UsageError

    if threads is not None:
        if threads < 1:
            raise UsageError(f"`threads` must be at least 1, got {threads}")
        return threads, "--threads"
    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        if name == ENV and value == "auto":
            return None, ""
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{name} must be a whole number of threads >= 1"
                             f"{' or auto' if name == ENV else ''}, got {value!r}")
        return int(value), name
    return None, ""


def choose(threads: int | None = None, window: float = 0.1) -> Choice:
    """The thread count for this process now (see the module docstring)."""
    fixed, source = requested(threads)
    if fixed is None:
        return automatic(window)
    allowed, _ = cores_allowed()
    return Choice(fixed, False, f"{source}={fixed}", allowed, 0, _share())


def automatic(window: float = 0.1) -> Choice:
    """The free cores now: allowed, less those other processes keep busy, shared among this
    machine's data-parallel processes."""
    allowed, why = cores_allowed()
    share = _share()
    before = _START  # a command's import time is the measuring window, if it is recent
    if before is None or time.monotonic() - before.at > STALE_S:
        before = read_load()  # a long-lived process (a notebook): measure now
    time.sleep(max(0.0, window - (time.monotonic() - before.at)) if before else 0.0)
    busy = _taken(others_busy(before, read_load()), allowed)
    parts = [why, f"{busy} busy with other processes" if busy else "none busy with other "
             "processes"]
    if share > 1:
        parts.append(f"shared by {share} processes")
    return Choice(_free(allowed, busy, share), True, "; ".join(parts), allowed, busy, share)


def _share() -> int:
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))


def _taken(others: float, allowed: int) -> int:
    """Whole cores held by other processes (a core counts from BUSY_CORE of it); at least one
    of the allowed cores is always left to this process."""
    return min(allowed - 1, int(others + BUSY_CORE))


def _free(allowed: int, taken: int, share: int) -> int:
    """This process's cores: its share of the allowed ones, less what other processes take
    beyond the run's own `share - 1` sibling processes at their shares (they show up as busy
    cores too, and must not make every process of a run shrink, then grow, in turn)."""
    per = max(1, allowed // share)
    return max(1, per - max(0, taken - per * (share - 1)))


def apply(count: int) -> None:
    """torch's intra-op threads, and the BLAS/OpenMP pools that numpy and scikit-learn load
    (threadpoolctl, which scikit-learn brings), all to `count`."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(count)


@contextlib.contextmanager
def using(threads: int | None = None) -> Iterator[Choice]:
    """Computes with the chosen count inside the block, then restores torch's previous one
    (a notebook keeps its own setting)."""
    import torch

    previous = torch.get_num_threads()
    choice = choose(threads)
    apply(choice.threads)
    try:
        yield choice
    finally:
        apply(previous)


class Governor:
    """Keeps the thread count of a training run right as the machine's load changes.

    `step(seconds)` after every training step; it reads the load every CHECK_S seconds and
    times candidates: when more than one core is free, a trial runs `TRIAL` steps (after
    `WARMUP`) at each of (free, 1) threads and keeps the faster, favouring fewer threads unless
    more are at least 10% faster.
    """

    WARMUP, TRIAL, TRIAL_S = 2, 8, 0.2

    def __init__(self, choice: Choice, check_s: float = CHECK_S) -> None:
        self.choice, self.check_s = choice, check_s
        self.free = choice.threads  # cores free for this process at the last check
        self.threads = choice.threads
        self._last = read_load() if choice.auto else None
        self._trial: list[int] = []  # candidates still to time
        self._timed: dict[int, float] = {}  # candidate -> seconds per step
        self._steps: list[float] = []
        self._start_trial()
        apply(self.threads)

    def _start_trial(self) -> None:
        self._trial = [self.free, 1] if self.choice.auto and self.free > 1 else []
        self._timed.clear()
        self._steps = []
        if self._trial:
            self.threads = self._trial[0]

    def step(self, seconds: float) -> None:
        if not self.choice.auto:
            return
        if self._trial:
            self._time(seconds)
        now = time.monotonic()
        if self._last is not None and now - self._last.at >= self.check_s:
            load = read_load()
            busy = others_busy(self._last, load)
            self._last = load
            free = _free(self.choice.allowed, _taken(busy, self.choice.allowed),
                         self.choice.share)
            if free != self.free:  # a neighbour started or stopped: choose again
                self.free = self.threads = free
                self._start_trial()
                apply(self.threads)

    def _time(self, seconds: float) -> None:
        self._steps.append(seconds)
        timed = self._steps[self.WARMUP:]  # the first steps after a change pay for it
        if len(timed) < self.TRIAL or (sum(timed) < self.TRIAL_S and len(timed) < 100):
            return  # tiny steps: time at least TRIAL_S seconds of them
        self._timed[self._trial.pop(0)] = sorted(timed)[len(timed) // 2]
        self._steps = []
        if self._trial:
            self.threads = self._trial[0]
        else:
            fewest = min(self._timed)
            best = min(self._timed, key=self._timed.__getitem__)
            self.threads = best if self._timed[best] < 0.9 * self._timed[fewest] else fewest
        apply(self.threads)
