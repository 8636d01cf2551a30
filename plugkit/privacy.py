"""Differentially private training: DP-SGD (Abadi et al., "Deep Learning with Differential
Privacy", CCS 2016) through Opacus, with every other use of the records accounted for.

`plugkit train FAMILY --dp-epsilon E [--dp-delta D] [--dp-clip C]` plans, before it reads a
record, how the run spends (E, D) (`plan`, kept in run.json):
- the histograms the family is built from (a table's encoding: plugkit.formats.tabular_private;
  an image model's class mix), released together once with Gaussian noise of std
  `histogram_noise` per count. A record is in one cell of each, so their L2 sensitivity is
  sqrt(histograms); they take PREPROCESSING_SHARE of the budget (in zCDP terms: Bun & Steinke,
  TCC 2016). A category is named only when its noisy count clears `threshold`, so that one
  record's category is named with probability at most THRESHOLD_SHARE * D in all;
- DP-SGD: batches drawn as the accountant assumes (each record independently with probability
  q = batch_size / records: Poisson sampling), each record's gradient clipped to norm C and
  Gaussian noise of std `noise` * C added to their sum, `noise` the smallest that keeps the
  planned steps (epochs * ceil(records / batch_size)) within the budget.
One RDP accountant (Mironov, CSF 2017; Opacus') composes the two: the histograms are its first
entry, each step of DP-SGD the next; the epsilon spent is its figure at delta D minus the
threshold's part. A run stopped early (--max-time, Ctrl-C) has taken fewer steps and spent
less; the accountant is kept in the checkpoint, so a resumed run goes on counting. In a
multi-process run (--nproc) every rank clips its share of the global Poisson batch per record,
the clipped sums are added over the ranks and the noise is added once, by rank 0 (Opacus'
DistributedDPOptimizer).
What is not private: the schema (column names, kinds, dtypes, class names) and the training
logs (metrics.jsonl's losses are computed on the records); no weights are chosen on validation
data.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import torch

from plugkit.errors import UsageError

PREPROCESSING_SHARE = 0.2  # of the budget (its zCDP rho) spent on the histograms
THRESHOLD_SHARE = 0.1  # of delta: the chance that some category of one record is named
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

    def noise_seed(self, seed):
        """The seed of a noise draw: `seed` (from --seed, replayable), or under secure_rng one
        from the operating system's entropy, so that no noise of the run can be replayed from
        its settings."""
        return int.from_bytes(os.urandom(8), "little") >> 1 if self.secure_rng else seed

    def settled(self, records: int) -> Budget:
        """With delta chosen for `records` when not given: well below 1 / n."""
        if self.delta is not None:
            if self.delta >= 1 / records:
                raise UsageError(f"`dp_delta` {self.delta:g} is not below 1 / n = "
                                 f"{1 / records:.3g} ({records:,} records): such a delta "
                                 "allows publishing a record outright")
            return self
        return Budget(self.epsilon, min(1e-5, 1 / (10 * records)), self.clip, self.secure_rng)


@dataclass(frozen=True)
class Plan:
    """How a run spends its budget, fixed before it reads a record (module docstring)."""

    budget: Budget  # settled: delta chosen
    histograms: int  # released before training (0: none)
    categorical: int  # of them, those whose categories are named by thresholding
    histogram_noise: float  # std of the noise on each count
    threshold: float  # the noisy count a category needs to be named
    noise: float  # DP-SGD's noise multiplier
    sample_rate: float
    steps: int  # planned
    epochs: int
    rho: float = 0.0  # zCDP rho left to a family that spends it itself (Ledger)

    @property
    def rdp_delta(self) -> float:
        """The delta the accountant converts at: the budget's, less the threshold's part."""
        return self.budget.delta * (1 - THRESHOLD_SHARE * (self.categorical > 0))

    def preprocessing_entry(self) -> list:
        """The histograms as the accountant's first entry: a Gaussian mechanism is one
        'step' of noise multiplier sigma / sensitivity at sample rate 1."""
        if not self.histograms:
            return []
        return [(self.histogram_noise / math.sqrt(self.histograms), 1.0, 1)]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(**{**d, "budget": Budget(**d["budget"])})


def plan(budget: Budget, histograms: int, categorical: int, records: int, batch_size: int,
         epochs: int) -> Plan:
    """The plan for `budget` (settled) over `records` training records: the histograms'
    noise from PREPROCESSING_SHARE of the budget's rho, then the smallest DP-SGD noise whose
    planned steps keep the whole within (epsilon, delta)."""
    from opacus.accountants import RDPAccountant

    _quiet()
    sample_rate = min(batch_size / records, 1.0)
    steps = epochs * math.ceil(records / batch_size)
    draft = _histograms(budget, histograms, categorical)
    draft = dataclasses.replace(draft, sample_rate=sample_rate, steps=steps, epochs=epochs)
    delta = draft.rdp_delta

    def spent(noise: float) -> float:
        accountant = RDPAccountant()
        accountant.history = draft.preprocessing_entry() + [(noise, sample_rate, steps)]
        return accountant.get_epsilon(delta)

    low, high = 0.05, 1.0
    while spent(high) > budget.epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise UsageError(f"`dp_epsilon` {budget.epsilon:g} is too small for "
                             f"{steps:,} steps of DP-SGD: fewer epochs or a larger batch")
    for _ in range(40):  # bisection to 1e-12 of the ratio
        middle = math.sqrt(low * high)
        low, high = (low, middle) if spent(middle) <= budget.epsilon else (middle, high)
    return dataclasses.replace(draft, noise=high)


def plan_own(budget: Budget, histograms: int, categorical: int) -> Plan:
    """The plan of a family that spends its budget itself (Family.private_mechanism): the
    histograms as for DP-SGD, and the rho the accountant allows besides them left to the
    family (however many epochs it takes to spend it)."""
    from opacus.accountants import RDPAccountant

    _quiet()
    draft = _histograms(budget, histograms, categorical)

    def spent(rho: float) -> float:  # all at sample rate 1: RDP adds up as rho does
        accountant = RDPAccountant()
        accountant.history = draft.preprocessing_entry() + [(1 / math.sqrt(2 * rho), 1.0, 1)]
        return accountant.get_epsilon(draft.rdp_delta)

    # the zCDP conversion's rho is a lower bound of what the accountant allows: from it, up
    low = (1 - PREPROCESSING_SHARE * bool(histograms)) * _rho(budget.epsilon, draft.rdp_delta)
    high = low * 2
    while spent(high) <= budget.epsilon:
        low, high = high, high * 2
    for _ in range(40):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if spent(middle) <= budget.epsilon else (low, middle)
    return dataclasses.replace(draft, rho=low)


def _rho(epsilon: float, delta: float) -> float:
    """A zCDP rho that is (epsilon, delta)-DP (Bun & Steinke, TCC 2016, Prop. 1.3, solved
    for rho); the RDP accountant's conversion is tighter, so what it reports stays below."""
    log = math.log(1 / delta)
    return (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2


def _histograms(budget: Budget, histograms: int, categorical: int) -> Plan:
    """A plan with the histograms' noise and threshold set, from PREPROCESSING_SHARE of rho."""
    draft = Plan(budget, histograms, categorical, 0.0, math.inf, 0.0, 1.0, 0, 0)
    rho = _rho(budget.epsilon, draft.rdp_delta)
    sigma = math.sqrt(histograms / (2 * PREPROCESSING_SHARE * rho)) if histograms else 0.0
    threshold = math.inf
    if categorical:
        tail = THRESHOLD_SHARE * budget.delta / categorical  # per categorical column
        threshold = 1 + sigma * NormalDist().inv_cdf(1 - tail)
    return dataclasses.replace(draft, histogram_noise=sigma, threshold=threshold)


def _quiet() -> None:
    """Warnings that say nothing to a user: a layer whose output does not depend on its input
    (RowLikelihood's scales) gets its per-sample gradients from the output's gradient, as
    intended; "optimal order is the largest (smallest) alpha": the RDP bound is an upper bound
    all the same."""
    for expected in ("Full backward hook is firing when gradients", "Optimal order is the"):
        warnings.filterwarnings("ignore", message=expected)


def require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise UsageError(f"`dp_epsilon` needs Opacus, an optional extra: {INSTALL}") from None


class DPSGD:
    """A family trained by DP-SGD: Opacus' per-sample gradient hooks on its modules, its
    optimizers swapped for Opacus' DPOptimizer (clip each sample, add noise once), and the
    accountant of the steps taken."""

    def __init__(self, family: Any, plan: Plan, batch_size: int,
                 history: list | None = None, ranks: int = 1) -> None:
        """`history`: the accountant's, from the checkpoint of a resumed run; `ranks`: the
        processes of a multi-process run, each clipping its share of every batch."""
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer

        _quiet()
        self.plan, budget = plan, plan.budget
        self.accountant = RDPAccountant()
        self.accountant.history = [tuple(h) for h in history] if history is not None else \
            plan.preprocessing_entry()
        _register_own_grad_samplers(family)
        self._hooks = []
        modules, optimizers = family.private_parts()
        for name, module in modules.items():
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
            generator = torch.Generator(family.device).manual_seed(budget.noise_seed(None))
        # several ranks: each divides its clipped sum (rank 0's with the noise) by its share
        # of the expected batch, and the all_reduce averages the shares
        kind, expected = (DPOptimizer, batch_size) if ranks == 1 else \
            (_noise_once(), batch_size / ranks)
        self.optimizers = {}
        for name, optimizer in optimizers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                private = kind(optimizer, noise_multiplier=plan.noise,
                               max_grad_norm=budget.clip, expected_batch_size=expected,
                               loss_reduction="mean", generator=generator,
                               secure_mode=budget.secure_rng)
            _swap(family, optimizer, private)
            self.optimizers[name] = private

    def stepped(self) -> None:
        """Counts one step of DP-SGD (taken by the family's train_step)."""
        self.accountant.step(noise_multiplier=self.plan.noise,
                             sample_rate=self.plan.sample_rate)

    def empty_step(self, others: dict | None = None) -> None:
        """A step whose Poisson batch drew no record: the noise alone is released, as the
        accountant assumes (skipping it would tell that the batch was empty). In a
        multi-process run, also the step of a rank whose share of a batch smaller than the
        number of ranks is empty: it adds nothing to the clipped sums, and steps `others`,
        the family's other optimizers, with zero gradients, so that it joins every all_reduce
        the ranks with records make (the private optimizers step first, as families do)."""
        for optimizer in self.optimizers.values():
            for p in optimizer.params:
                p.grad_sample = p.new_zeros((0, *p.shape))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for optimizer in (others or {}).values():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = torch.zeros_like(p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.stepped()

    def others(self, optimizers: dict) -> dict:
        """The family's optimizers that DP-SGD does not wrap (a GAN's generator's)."""
        private = {id(o) for o in self.optimizers.values()}
        return {name: o for name, o in optimizers.items() if id(o) not in private}

    def history(self) -> list:
        return [list(h) for h in self.accountant.history]

    def spent(self) -> dict:
        """The (epsilon, delta) spent so far, the histograms included, for run.json."""
        plan = self.plan
        steps = sum(h[2] for h in self.accountant.history) - bool(plan.histograms)
        epsilon = self.accountant.get_epsilon(plan.rdp_delta) if self.accountant.history \
            else 0.0
        return {"epsilon": epsilon, "delta": plan.budget.delta, "steps": steps,
                "target": asdict(plan.budget), "plan": plan.as_dict(),
                "accountant": "RDP (Opacus), the histograms and DP-SGD composed"}


class Ledger:
    """The budget of a family that spends it itself (Family.private_mechanism): `plan.rho`
    of zCDP for its own mechanisms, each recorded in the same RDP accountant as the histograms.

    A Gaussian mechanism of L2 sensitivity s and noise std sigma is rho = s^2 / (2 sigma^2)
    zCDP, which is (alpha, alpha rho)-RDP at every order: the accountant's entry for a step of
    noise multiplier sigma / s at sample rate 1. The exponential mechanism with epsilon e is
    e^2 / 8 zCDP (Cesar & Rogers, ALT 2021), entered as the Gaussian of that rho."""

    def __init__(self, plan: Plan, history: list | None = None) -> None:
        from opacus.accountants import RDPAccountant

        self.plan = plan
        # the family's noise and choices: the core-seeded global RNG, or under secure_rng a
        # generator seeded by the OS (its draws then not replayed by a resume)
        self.generator = torch.Generator().manual_seed(plan.budget.noise_seed(None)) \
            if plan.budget.secure_rng else None
        self.accountant = RDPAccountant()
        self.accountant.history = [tuple(h) for h in history] if history is not None else \
            plan.preprocessing_entry()

    @property
    def left(self) -> float:
        """The rho the family may still spend."""
        own = self.accountant.history[bool(self.plan.histograms):]
        return self.plan.rho - sum(1 / (2 * noise ** 2) for noise, _, _ in own)

    def gaussian(self, sigma: float, sensitivity: float = 1.0) -> None:
        """Records a Gaussian mechanism: noise of std `sigma` on a query of L2 `sensitivity`."""
        self._spend(sensitivity ** 2 / (2 * sigma ** 2))

    def exponential(self, epsilon: float) -> None:
        """Records an exponential mechanism of `epsilon` (its score's sensitivity included)."""
        self._spend(epsilon ** 2 / 8)

    def _spend(self, rho: float) -> None:
        if rho > self.left * (1 + 1e-9) + 1e-15:
            raise RuntimeError(f"the family overspent its privacy budget: rho {rho:.3g} "
                               f"asked, {self.left:.3g} left")
        self.accountant.history.append((1 / math.sqrt(2 * rho), 1.0, 1))

    def stepped(self) -> None:
        """The trainer's call after every step: a ledger counts what the family records."""

    def history(self) -> list:
        return [list(h) for h in self.accountant.history]

    def spent(self) -> dict:
        """The (epsilon, delta) spent so far, the histograms included, for run.json."""
        plan = self.plan
        epsilon = self.accountant.get_epsilon(plan.rdp_delta) if self.accountant.history \
            else 0.0
        return {"epsilon": epsilon, "delta": plan.budget.delta,
                "rho": plan.rho - self.left, "target": asdict(plan.budget),
                "plan": plan.as_dict(),
                "accountant": "RDP (Opacus), the histograms and the family's own mechanisms "
                              "composed"}


def unreleased_notes(record: dict) -> list[str]:
    """What the noise of a private run (its run.json) hid entirely, one line each: the user's
    to hear (the cause, too few records for the epsilon, is theirs to change), from the CLI
    and from plugkit.train alike."""
    from plugkit.formats import tabular_private

    meta, notes = record["data"]["meta"], []
    if meta.get("vocab") == []:
        notes.append("privacy: at this epsilon the noise hid every character of the text: its "
                     "samples are empty lines; more lines or a larger --dp-epsilon would "
                     "release them (docs/privacy.md)")
    hidden = [str(f) for f, shown in enumerate(meta.get("private", {}).get("released", []))
              if not shown]
    if hidden:  # sequences: their features' means and stds
        notes.append(f"privacy: at this epsilon the noise hid every value of feature "
                     f"{', '.join(hidden)}: it standardizes as if its mean were 0 and its std "
                     "1; more sequences or a larger --dp-epsilon would measure it "
                     "(docs/privacy.md)")
    names = tabular_private.unreleased(meta.get("encoding", []))
    if names:
        notes.append(f"privacy: at this epsilon the noise hid every value of "
                     f"{', '.join(names)}: their samples are all missing or 0; more records or "
                     "a larger --dp-epsilon would release them (docs/privacy.md)")
    return notes


def _noise_once() -> type:
    """Opacus' DistributedDPOptimizer, with the noise drawn on every rank and added by rank 0
    alone: the ranks' random streams stay in step (a checkpoint keeps rank 0's, and Batch.randn
    relies on every rank drawing the same numbers), and the noise is added once."""
    from opacus.optimizers import DistributedDPOptimizer, DPOptimizer

    class NoiseOnce(DistributedDPOptimizer):
        def add_noise(self) -> None:
            DPOptimizer.add_noise(self)
            if self.rank != 0:
                for p in self.params:
                    p.grad = p.summed_grad.view_as(p)

    return NoiseOnce


def with_defaults(family: Any, pairs: list[str]) -> list[str]:
    """key=value options with the family's values for private runs (Family.private_options)
    where `pairs` give none: a GAN's pac of 1. The run records the values it used."""
    from plugkit import options

    return options.with_defaults(family.private_options, pairs)


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
