"""Data-parallel training on torch.distributed: gloo on CPU, NCCL on GPU, started by torchrun.

    plugkit train vae --nproc 2                    # spawns torch.distributed.run for you
    torchrun --nproc-per-node 2 -m plugkit train vae
    torchrun --nnodes 2 --node-rank 0 --rdzv-endpoint host:29500 -m plugkit train vae

Every rank holds the whole model, the same seed and therefore the same RNG streams, and trains
on its contiguous share of each global batch. Before every optimizer step the gradients that
optimizer is about to apply are averaged over the ranks (one all_reduce of the flattened
gradients, weighted by each rank's rows): DistributedDataParallel's arithmetic, attached to the
optimizers instead of to module forwards, because a family's step may call a network several
times per backward pass with parts of it frozen (the GAN calls D on reals, on fakes and, frozen,
inside G's step), which DDP's reducer does not support. Per-row noise comes from
Batch.randn, drawn for the whole global batch and sliced, so N processes compute what one
process computes with the same global batch, up to float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass
class World:
    rank: int = 0
    size: int = 1
    rows: list[int] = field(default_factory=lambda: [1, 1])  # this rank's rows, global rows

    @property
    def main(self) -> bool:
        """Only the main rank writes checkpoints, metrics, logs and samples."""
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> tuple[int, torch.Tensor]:
        """(start, rows) of a global batch `index` that belong to this rank: contiguous, sizes
        differing by at most one."""
        start = self.rank * len(index) // self.size
        stop = (self.rank + 1) * len(index) // self.size
        self.rows = [stop - start, len(index)]
        return start, index[start:stop]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on one: ranks stop at the same step."""
        if self.size == 1:
            return flag
        t = torch.tensor([float(flag)], device=_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def flags(self, *flags: bool) -> list[bool]:
        """Each flag true on every rank when it is true on one, in one all_reduce: the
        training loop's per-step agreement (diverged, interrupted, out of time)."""
        if self.size == 1:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def mean(self, totals: dict[str, float], seen: int) -> tuple[dict[str, float], int]:
        """Sums of per-row losses and row counts over all ranks."""
        if self.size == 1:
            return totals, seen
        keys = sorted(totals)
        t = torch.tensor([totals[k] for k in keys] + [seen], dtype=torch.float64,
                         device=_device())
        dist.all_reduce(t)
        return dict(zip(keys, t[:-1].tolist(), strict=True)), int(t[-1].item())

    def average_gradients(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Registers the gradient averaging as a pre-hook of every optimizer's step."""
        if self.size == 1:
            return
        for optimizer in optimizers.values():
            optimizer.register_step_pre_hook(lambda opt, args, kwargs: self._all_reduce(opt))

    def _all_reduce(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads) * (self.rows[0] / self.rows[1])  # weight by rows
        dist.all_reduce(flat)
        for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(reduced)


def _device() -> torch.device:
    backend = dist.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else \
        torch.device("cpu")


def init(device: torch.device) -> tuple[World, torch.device]:
    """The process group when torchrun started us (WORLD_SIZE > 1), else a world of one.
    On GPUs each rank takes the device of its LOCAL_RANK."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size()), device


def finish(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


ERROR_DIR = "PLUGKIT_ERROR_DIR"  # where a worker leaves its one-line error (cli.one_line_errors)


def launch(nproc: int, args: list[str]) -> int:
    """Runs `plugkit ARGS` in `nproc` processes through torch.distributed.run; returns the exit
    code. The workers import the installed plugkit whatever the current folder holds
    (PYTHONSAFEPATH: a clone's plugkit/ folder next to the user must not shadow it), share the
    cores (each chooses its threads for its share: plugkit.threads), and a failure reaches the
    user as the failing worker's one line instead of torchrun's report."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "plugkit", *args]
    with tempfile.TemporaryDirectory(prefix="plugkit-nproc-") as errors:
        share = str(max(1, (os.cpu_count() or 1) // nproc))  # what torchrun would set alone
        env = {"OMP_NUM_THREADS": share, "PLUGKIT_THREADS": "auto", **os.environ,
               "PYTHONSAFEPATH": "1", ERROR_DIR: errors}
        log = Path(errors) / "stderr.log"
        with open(log, "w+") as stderr:
            code = subprocess.run(command, env=env, stderr=stderr).returncode
            stderr.seek(0)
            captured = stderr.read()
        if code == 0:
            sys.stderr.write(captured)  # warnings, passed on as they came
            return 0
        first = sorted(Path(errors).glob("rank*"))
        if first:
            status, _, message = first[0].read_text().partition("\n")
            sys.stderr.write(message.rstrip("\n") + "\n")
            return int(status)
    tail = [line for line in captured.splitlines() if line.strip()]
    sys.stderr.write(f"error: a training process failed (exit {code}): "
                     f"{tail[-1] if tail else 'no message'}\n")
    return code


def report_failure(message: str, exit_code: int) -> None:
    """A worker's one-line error, for launch() to show instead of torchrun's report."""
    folder = os.environ.get(ERROR_DIR)
    if folder and os.path.isdir(folder):
        path = Path(folder) / f"rank{int(os.environ.get('RANK', '0')):05d}"
        path.write_text(f"{exit_code}\n{message}\n")
