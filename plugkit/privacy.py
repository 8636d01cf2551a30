"""Differentially private training: DP-SGD (Abadi et al., "Deep Learning with Differential
Privacy", CCS 2016) through Opacus, with every other use of the records accounted for.

`plugkit train FAMILY --dp-epsilon E [--dp-delta D] [--dp-clip C]` spends (E, D) in two parts
that add up (basic composition):
- PREPROCESSING_SHARE of both on what the family is built from: a table's encoding comes from
  noisy histograms (plugkit.formats.tabular_private), not from the records;
- the rest on DP-SGD: batches drawn as the accountant assumes (each record independently with
  probability q = batch_size / records: Poisson sampling), each record's gradient clipped to
  norm C and Gaussian noise of std sigma * C added to their sum, sigma chosen by Opacus so that
  the planned steps (epochs * ceil(records / batch_size)) spend that part. The accountant (RDP,
  Mironov 2017) counts the steps taken, so a run stopped early (--max-time, Ctrl-C) spends
  less; it is kept in the checkpoint, so a resumed run goes on counting.
What is not private: the schema (column names, kinds, dtypes) and the training logs
(metrics.jsonl's losses are computed on the records); no weights are chosen on validation data.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

from plugkit.errors import UsageError

PREPROCESSING_SHARE = 0.1  # of epsilon and delta, spent on what the family is built from
INSTALL = "pip install 'plugkit[privacy]'"


@dataclass(frozen=True)
class Budget:
    """What `--dp-*` asked for; `delta` None: min(1e-5, 1 / (10 n))."""

    epsilon: float
    delta: float | None = None
    clip: float = 1.0
    secure_rng: bool = False

    def check(self) -> None:
        if not self.epsilon > 0 or not math.isfinite(self.epsilon):
            raise UsageError(f"`dp_epsilon` must be a positive number, got {self.epsilon}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise UsageError(f"`dp_delta` must be between 0 and 1, got {self.delta}")
        if not self.clip > 0:
            raise UsageError(f"`dp_clip` must be positive, got {self.clip}")

    def settled(self, records: int) -> Budget:
        """With delta chosen for `records` when not given: well below 1 / n."""
        if self.delta is not None:
            if self.delta >= 1 / records:
                raise UsageError(f"`dp_delta` {self.delta:g} is not below 1 / n = "
                                 f"{1 / records:.3g} ({records:,} records): such a delta "
                                 "allows publishing a record outright")
            return self
        return Budget(self.epsilon, min(1e-5, 1 / (10 * records)), self.clip, self.secure_rng)

    def preprocessing(self) -> tuple[float, float]:
        return self.epsilon * PREPROCESSING_SHARE, self.delta * PREPROCESSING_SHARE

    def training(self) -> tuple[float, float]:
        return self.epsilon * (1 - PREPROCESSING_SHARE), self.delta * (1 - PREPROCESSING_SHARE)


def require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise UsageError(f"`dp_epsilon` needs Opacus, an optional extra: {INSTALL}") from None


class DPSGD:
    """A family trained by DP-SGD: Opacus' per-sample gradient hooks on its modules, its
    optimizers swapped for Opacus' DPOptimizer (clip each sample, add noise once), and the
    accountant of the steps taken."""

    def __init__(self, family: Any, budget: Budget, records: int, batch_size: int,
                 epochs: int, resumed: dict | None = None) -> None:
        """`resumed`: the run.json record and accountant history of a run on disk, whose
        noise multiplier it keeps."""
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        # a layer whose output does not depend on its input (RowLikelihood's scales) gets its
        # per-sample gradients from the output's gradient: expected, said once per backward;
        # "optimal order is the largest alpha": the RDP bound is an upper bound all the same
        for expected in ("Full backward hook is firing when gradients",
                         "Optimal order is the largest alpha"):
            warnings.filterwarnings("ignore", message=expected)
        self.budget = budget
        self.sample_rate = min(batch_size / records, 1.0)
        self.epochs, self.planned = epochs, epochs * math.ceil(records / batch_size)
        epsilon, self.delta = budget.training()
        self.accountant = RDPAccountant()
        if resumed is not None:
            self.noise = resumed["record"]["noise_multiplier"]
            self.accountant.history = [tuple(h) for h in resumed["history"] or []]
        else:
            self.noise = get_noise_multiplier(target_epsilon=epsilon, target_delta=self.delta,
                                              sample_rate=self.sample_rate,
                                              steps=self.planned, accountant="rdp")
        _register_own_grad_samplers(family)
        self._hooks = []
        for name, module in family.modules().items():
            errors = GradSampleModule.validate(module, strict=False)
            if errors:
                raise UsageError(f"{family.name} cannot train privately: {name} has a layer "
                                 "that mixes samples or keeps statistics of them (BatchNorm "
                                 f"and the like): {errors[0]}")
            with warnings.catch_warnings():  # "secure_mode off": said in docs/privacy.md
                warnings.simplefilter("ignore")
                self._hooks.append(GradSampleModule(module, loss_reduction="mean"))
        # secure: Opacus' secure mode (each noise value the mean of 4 draws, against the
        # floating-point attacks of Jin et al. 2021 / Haney et al. 2022) from a generator seeded
        # by the OS's entropy, not by --seed, so the noise cannot be replayed from the run's
        # settings. torchcsprng, Opacus' cryptographic generator, is not in the registry.
        generator = None
        if budget.secure_rng:
            generator = torch.Generator(family.device).manual_seed(
                int.from_bytes(os.urandom(8), "little") >> 1)
        self.optimizers = {}
        for name, optimizer in family.optimizers().items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                private = DPOptimizer(optimizer, noise_multiplier=self.noise,
                                      max_grad_norm=budget.clip, expected_batch_size=batch_size,
                                      loss_reduction="mean", generator=generator,
                                      secure_mode=budget.secure_rng)
            _swap(family, optimizer, private)
            self.optimizers[name] = private

    def stepped(self) -> None:
        """Counts one step of DP-SGD (taken by the family's train_step)."""
        self.accountant.step(noise_multiplier=self.noise, sample_rate=self.sample_rate)

    def empty_step(self) -> None:
        """A step whose Poisson batch drew no record: the noise alone is released, as the
        accountant assumes (skipping it would tell that the batch was empty)."""
        for optimizer in self.optimizers.values():
            for p in optimizer.params:
                p.grad_sample = p.new_zeros((0, *p.shape))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.stepped()

    def history(self) -> list:
        return [list(h) for h in self.accountant.history]

    def spent(self) -> dict:
        """The (epsilon, delta) spent so far, preprocessing included, for run.json."""
        pre_epsilon, pre_delta = self.budget.preprocessing()
        steps = sum(h[2] for h in self.accountant.history)
        sgd = self.accountant.get_epsilon(self.delta) if steps else 0.0
        return {"epsilon": pre_epsilon + sgd, "delta": pre_delta + self.delta,
                "steps": steps, "planned_steps": self.planned, "epochs": self.epochs,
                "noise_multiplier": self.noise, "sample_rate": self.sample_rate,
                "clip": self.budget.clip, "target": asdict(self.budget),
                "accountant": "rdp (Opacus)", "secure_rng": self.budget.secure_rng}


def poisson_rows(records: int, rate: float, seed: int) -> torch.Tensor:
    """The rows of one Poisson batch: each record independently with probability `rate`,
    from a generator of its own (seeded per step, so a resumed run draws the same batches)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.nonzero(torch.rand(records, generator=generator) < rate).squeeze(1)


def _register_own_grad_samplers(family: Any) -> None:
    """Layers of the family's that Opacus does not know give their per-sample gradients as a
    static `per_sample_grads(layer, activations, backprops)` (docs/plugins.md)."""
    from opacus.grad_sample import register_grad_sampler

    for module in family.modules().values():
        for layer in module.modules():
            own = getattr(type(layer), "per_sample_grads", None)
            if own is not None:
                register_grad_sampler(type(layer))(own)


def _swap(family: Any, old: Any, new: Any) -> None:
    """Every attribute of the family holding `old` holds `new`: its train_step then steps the
    private optimizer (and optimizers() returns it, for checkpoints)."""
    swapped = [name for name, value in vars(family).items() if value is old]
    if not swapped:
        raise UsageError(f"{family.name} cannot train privately: optimizers() returns an "
                         "optimizer that is not an attribute of the family")
    for name in swapped:
        setattr(family, name, new)
