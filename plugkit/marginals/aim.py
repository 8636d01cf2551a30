"""AIM: an adaptive, iterative mechanism for marginals (McKenna, Mullins, Sheldon & Miklau,
"AIM: An Adaptive and Iterative Mechanism for Differentially Private Synthetic Data", VLDB
2022), one round per call, so that a run checkpoints, stops and resumes between rounds.

The records are read only here, through marginals (count tables) of their attributes:
- round 1 measures every one-way marginal with Gaussian noise;
- each later round picks the marginal the current model gets most wrong, by the exponential
  mechanism, among the candidates (the workload's cliques and their subsets) whose addition
  keeps the model under its size limit (which grows with the budget spent), measures it with
  Gaussian noise and refits the model (plugkit.marginals.model) to every measurement so far;
- when a measurement barely moves the model, the noise is halved (budget annealing); the last
  round spends what is left.
Scores: w_r (||M_r(data) - M_r(model)||_1 - sqrt(2/pi) sigma n_r), w_r the number of the
workload's attributes that r shares with it (summed over the workload), n_r its cells; the
score's sensitivity is max w_r. A round gives 0.9 of its rho to the measurement and 0.1 to the
selection; ROUNDS_PER_ATTRIBUTE * d rounds are planned. A count vector's L2 sensitivity is 1
(a record adds or removes one count).
Without a budget (not private) the marginals are measured exactly and each round takes the
worst candidate, until every candidate is within TOLERANCE of the data or the model is full.
"""

from __future__ import annotations

import itertools
import math

import torch

from plugkit.marginals.model import GraphicalModel, Measurement, model_size_mb

ROUNDS_PER_ATTRIBUTE = 16  # AIM's T = 16 d
MEASURE_SHARE = 0.9  # of a round's rho for the Gaussian measurement; the rest selects
TOLERANCE = 0.005  # exact fit: stop when no candidate's L1 error is above this share of rows


def workload(d: int, size: int) -> list[tuple[int, ...]]:
    """Every clique of `size` attributes (all pairs, all triples)."""
    return list(itertools.combinations(range(d), min(size, d)))


def candidates(cliques: list[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
    """The downward closure of the workload, each clique with its weight w_r."""
    closure = {sub for q in cliques for k in range(1, len(q) + 1)
               for sub in itertools.combinations(q, k)}
    return {r: sum(len(set(r) & set(q)) for q in cliques) for r in sorted(closure)}


def marginal(codes: torch.Tensor, sizes: tuple[int, ...], clique: tuple[int, ...]
             ) -> torch.Tensor:
    """The counts of `clique`'s level combinations among the rows, float64, shape of its
    levels."""
    shape = [sizes[a] for a in clique]
    flat = torch.zeros((), dtype=torch.long, device=codes.device)
    for a in clique:
        flat = flat * sizes[a] + codes[:, a]
    return torch.bincount(flat, minlength=math.prod(shape)).double().reshape(shape)


class AIM:
    """The mechanism's state between rounds: its measurements, noise and model."""

    def __init__(self, sizes: tuple[int, ...], workload_size: int = 2, max_mb: float = 80.0,
                 iters: int = 100, final_iters: int = 1000) -> None:
        self.sizes, self.max_mb = sizes, max_mb
        self.iters, self.final_iters = iters, final_iters
        self.weights = candidates(workload(len(sizes), workload_size))
        self.measurements: list[Measurement] = []
        self.sigma = self.epsilon = 0.0  # this round's noise and selection epsilon
        self.rounds = 0
        self.done = False
        self.model: GraphicalModel | None = None

    def step(self, codes: torch.Tensor, ledger) -> dict[str, float]:
        """One round on the records' levels `codes` [N, d]; `ledger` (plugkit.privacy.Ledger)
        or None for exact measurements. Returns what to log."""
        answers = {r: marginal(codes, self.sizes, r) for r in self.weights}
        if ledger is None:
            return self._exact_round(codes, answers)
        if self.rounds == 0:
            return self._first_round(answers, ledger)
        return self._round(answers, ledger)

    def _first_round(self, answers: dict, ledger) -> dict[str, float]:
        planned = ROUNDS_PER_ATTRIBUTE * len(self.sizes)
        rho = ledger.left
        self.sigma = math.sqrt(planned / (2 * MEASURE_SHARE * rho))
        self.epsilon = math.sqrt(8 * (1 - MEASURE_SHARE) * rho / planned)
        for a in range(len(self.sizes)):
            self._measure((a,), answers[(a,)], ledger)
        self._fit(self.iters)
        self.rounds = 1
        return {"rho_left": ledger.left}

    def _round(self, answers: dict, ledger) -> dict[str, float]:
        left = ledger.left
        if left < 2 * (1 / (2 * self.sigma ** 2) + self.epsilon ** 2 / 8):
            self.sigma = math.sqrt(1 / (2 * MEASURE_SHARE * left))  # the last round: the rest
            self.epsilon = math.sqrt(8 * (1 - MEASURE_SHARE) * left)
            self.done = True
        spent = ledger.plan.rho - left + 1 / (2 * self.sigma ** 2) + self.epsilon ** 2 / 8
        allowed = self._within_size(self.max_mb * spent / ledger.plan.rho)
        estimates = {r: self.model.marginal(r) for r in allowed}
        scores = torch.tensor([self.weights[r] * (
            (answers[r] - estimates[r]).abs().sum().item()
            - math.sqrt(2 / math.pi) * self.sigma * answers[r].numel()) for r in allowed],
            dtype=torch.float64)
        sensitivity = max(self.weights[r] for r in allowed)
        chosen = allowed[_exponential(scores, self.epsilon, sensitivity, ledger.generator)]
        ledger.exponential(self.epsilon)
        self._measure(chosen, answers[chosen], ledger)
        before = estimates[chosen]
        self._fit(self.final_iters if self.done else self.iters)
        moved = (self.model.marginal(chosen) - before).abs().sum().item()
        if not self.done and moved <= math.sqrt(2 / math.pi) * self.sigma * before.numel():
            self.sigma, self.epsilon = self.sigma / 2, self.epsilon * 2  # annealing
        self.rounds += 1
        return {"error": (answers[chosen] - before).abs().sum().item() / self.model.total,
                "rho_left": ledger.left}

    def _exact_round(self, codes: torch.Tensor, answers: dict) -> dict[str, float]:
        if self.rounds == 0:
            chosen, error = [(a,) for a in range(len(self.sizes))], 1.0
        else:
            allowed = self._within_size(self.max_mb)
            errors = {r: (answers[r] - self.model.marginal(r)).abs().sum().item() / len(codes)
                      for r in allowed if r not in self._measured()}
            worst = max(errors, key=lambda r: (errors[r] * self.weights[r], r), default=None)
            if worst is None or errors[worst] < TOLERANCE:
                self.done = True
                return {"error": errors[worst] if worst is not None else 0.0}
            chosen, error = [worst], errors[worst]
        for r in chosen:
            self.measurements.append(Measurement(r, answers[r], 1.0))
        self._fit(self.iters)
        self.rounds += 1
        return {"error": error}

    def _measure(self, clique: tuple[int, ...], answer: torch.Tensor, ledger) -> None:
        # the core-seeded global RNG, or the ledger's OS-seeded one under --dp-secure-rng
        noise = torch.randn(answer.shape, dtype=torch.float64,
                            generator=ledger.generator) * self.sigma
        ledger.gaussian(self.sigma)
        self.measurements.append(Measurement(clique, answer + noise.to(answer.device),
                                             self.sigma))

    def _fit(self, iters: int) -> None:
        self.model = GraphicalModel.estimate(self.sizes, self.measurements, iters=iters,
                                             warm=self.model)

    def _measured(self) -> set[tuple[int, ...]]:
        return {m.clique for m in self.measurements}

    def _within_size(self, limit: float) -> list[tuple[int, ...]]:
        """The candidates the model can take on without growing past `limit` MB."""
        current = [tuple(c) for c in self.model.cliques]
        return [r for r in self.weights
                if any(set(r) <= set(c) for c in current)
                or model_size_mb(self.sizes, current + [r]) <= limit]


def _exponential(scores: torch.Tensor, epsilon: float, sensitivity: float,
                 generator: torch.Generator | None) -> int:
    """The exponential mechanism (McSherry & Talwar, FOCS 2007): index i with probability
    proportional to exp(epsilon scores_i / (2 sensitivity)), by the Gumbel-max trick on the
    global RNG (which the core seeds and checkpoints) or `generator`."""
    gumbel = -torch.log(-torch.log(torch.rand(len(scores), dtype=torch.float64,
                                              generator=generator)
                                   .clamp_min(1e-300)))
    return int((epsilon * scores / (2 * sensitivity) + gumbel).argmax())
