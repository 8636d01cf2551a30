"""A discrete graphical model estimated from noisy marginals: Private-PGM in torch.

References:
  R. McKenna, D. Sheldon, G. Miklau. "Graphical-model based estimation and inference for
  differential privacy". ICML 2019 (Private-PGM; Algorithm 1: mirror descent).
  R. McKenna, B. Mullins, D. Sheldon, G. Miklau. "AIM: An Adaptive and Iterative Mechanism for
  Differentially Private Synthetic Data". VLDB 2022 (the mechanism that calls this estimator).

The model. d discrete attributes, attribute a with sizes[a] levels. The measured cliques that
are not inside another measured clique are the model's *factors*; each carries a log-potential
table theta_F, and p(x) = exp(sum_F theta_F(x_F)) / Z. The factors' interaction graph is
triangulated by greedy elimination (simplicial vertices first, then the vertex whose
neighbourhood has the fewest cells); the maximal cliques of the chordal graph, joined by a
maximum spanning tree on separator size (components joined by empty separators), form the
junction tree. Every attribute is a vertex, so an attribute no measurement touches is a clique
of its own with a zero potential: uniform. Each factor is added into the smallest tree clique
that contains it.

Inference. Belief propagation on the tree in log space (logsumexp), float64: an upward pass
(each clique sends its separator log-marginal to its parent), then a downward pass that gets
the parent-to-child message as the parent's calibrated separator marginal minus the child's
own upward message (HUGIN's division, safe here because potentials stay finite). The result is
the calibrated clique marginals mu_T, in counts summing to `total`.

Estimation (Algorithm 1 of the ICML paper, as the reference code `mbi` runs it). The loss is
  L(mu) = 1/2 sum_M ||(mu_M - y_M) / sigma_M||^2
over measurements M (clique, noisy counts y_M, noise std sigma_M); the 1/2 matches mbi and only
rescales the step size. Mirror descent with the entropy of the marginal polytope as mirror map
is, in the potentials, a gradient step: theta <- theta - alpha dL/dmu, where the gradient of a
measured clique lands on the factor containing it; mu(theta) then comes from belief
propagation. The step size starts at 2 / (Lip * total), Lip being the Lipschitz constant of the
gradient of L (exact for marginal queries: max over factors of sum_M |F| / (|M| sigma_M^2)),
and follows an Armijo rule: a step is kept when L drops by at least alpha/2 <dL, mu - mu'>,
and then alpha grows by STEP_GROWTH (5 %: with 1 % a fit of adult's marginals was still far
from converged after 300 iterations); otherwise it is rejected and alpha halves. A kept step's
mu' is the next iteration's mu, so an iteration costs one belief propagation.

Marginals of cliques inside a tree clique are sums of the calibrated tables; any other clique
is found by variable elimination on the factors mu_root * prod mu_T / mu_sep of the smallest
subtree covering the clique (the tree's own factorization of the joint, restricted to the
subtree). Sampling is ancestral down the tree: the root clique from its marginal, each child's
remaining attributes from their conditional given the separator, by inverse CDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

Clique = tuple[int, ...]
_F64 = torch.float64
STEP_GROWTH = 1.05  # of the step after a kept one (Armijo backtracking halves a rejected one)
# a log potential low enough that exp() of it is 0 in float64 next to any other, yet finite,
# so that belief propagation's differences of logs stay defined
IMPOSSIBLE = -1e4
STEP_START = 2.0  # the first step, in units of 1 / (Lipschitz constant * total)


@dataclass(frozen=True)
class Measurement:
    """Noisy counts of one marginal: `values[x_clique]` ~ count + N(0, noise^2)."""

    clique: Clique  # sorted attribute indices
    values: torch.Tensor  # float64, shape [sizes[a] for a in clique] (C order)
    noise: float  # the Gaussian noise's std; weights the loss by 1 / noise

    def __post_init__(self) -> None:
        if tuple(sorted(set(self.clique))) != tuple(self.clique):
            raise ValueError(f"clique {self.clique} must be sorted, without repeats")
        if self.noise <= 0:
            raise ValueError(f"noise must be positive, got {self.noise}")


# ---------------------------------------------------------------- table helpers
# A table over clique C (sorted) has one axis per attribute of C, in C's order. A table over a
# subset S of C "viewed in C" has size-1 axes for C's other attributes, so it broadcasts.


def _cells(sizes: Sequence[int], clique: Clique) -> int:
    return math.prod(sizes[a] for a in clique)


def _view(table: torch.Tensor, sub: Clique, sup: Clique, sizes: Sequence[int]) -> torch.Tensor:
    """`table` over `sub` reshaped to broadcast against tables over `sup` (sub within sup)."""
    inner = set(sub)
    return table.reshape([sizes[a] if a in inner else 1 for a in sup])


def _other_axes(sup: Clique, sub: Sequence[int]) -> list[int]:
    keep = set(sub)
    return [i for i, a in enumerate(sup) if a not in keep]


def _sum_onto(table: torch.Tensor, sup: Clique, sub: Clique) -> torch.Tensor:
    """Sum a table over `sup` down to `sub` (dims of sub, in sup's order)."""
    axes = _other_axes(sup, sub)
    # guard: sum(dim=[]) would reduce every axis
    return table.sum(dim=axes) if axes else table


def _lse_onto(
    table: torch.Tensor, sup: Clique, sub: Clique, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """Logsumexp a log table over `sup` down to `sub`, keeping the axes (viewed in sup).

    Shifts by the table's global max and sums exp in `scratch` (a flat buffer at least as big,
    reused: fresh 10^7-cell tables cost more in page faults than in arithmetic); falls back to
    torch.logsumexp's per-slice shift when a slice would underflow.
    """
    axes = _other_axes(sup, sub)
    if not axes:
        return table
    top = float(table.max())
    if math.isfinite(top):
        tmp = torch.empty_like(table) if scratch is None else scratch[: table.numel()]
        tmp = torch.sub(table, top, out=tmp.view(table.shape)).exp_()
        sums = tmp.sum(dim=axes, keepdim=True)
        # every slice's largest term is >= sums / 1e8 > 1e-288: far from subnormal
        if float(sums.min()) > 1e-280:
            return sums.log_().add_(top)
    return torch.logsumexp(table, dim=axes, keepdim=True)


def _maximal(cliques: Sequence[Clique]) -> list[Clique]:
    """The distinct cliques not contained in another, in first-seen order."""
    sets = list(dict.fromkeys(tuple(sorted(c)) for c in cliques))
    return [c for c in sets if not any(set(c) < set(o) for o in sets)]


# ---------------------------------------------------------------- junction tree


@dataclass(frozen=True)
class JunctionTree:
    """Cliques in breadth-first order from the root (index 0); parent[0] = -1."""

    cliques: list[Clique]
    parent: list[int]

    def separator(self, i: int) -> Clique:
        p = set(self.cliques[self.parent[i]])
        return tuple(a for a in self.cliques[i] if a in p)

    def children(self) -> list[list[int]]:
        kids: list[list[int]] = [[] for _ in self.cliques]
        for i, p in enumerate(self.parent):
            if p >= 0:
                kids[p].append(i)
        return kids


def _elimination_cliques(sizes: Sequence[int], cliques: Sequence[Clique]) -> list[set[int]]:
    """Greedy elimination on the interaction graph; returns each step's {v} + neighbours.

    Simplicial vertices (no fill-in) go first, so an already chordal graph gets no fill; among
    the rest the vertex whose neighbourhood has the fewest cells (min-weight), ties by index.
    """
    adj: dict[int, set[int]] = {a: set() for a in range(len(sizes))}
    for c in cliques:
        for a in c:
            adj[a].update(b for b in c if b != a)
    out = []
    while adj:
        v = min(adj, key=lambda u: _elimination_cost(sizes, adj, u))
        nb = adj.pop(v)
        for a in nb:
            adj[a].discard(v)
            adj[a].update(b for b in nb if b != a)
        out.append(nb | {v})
    return out


def _elimination_cost(
    sizes: Sequence[int], adj: dict[int, set[int]], v: int
) -> tuple[bool, int, int]:
    """(creates fill-in, cells of v's neighbourhood, v): the greedy order's key."""
    nb = adj[v]
    fill = any(b not in adj[a] for a in nb for b in nb if a < b)
    return (fill, math.prod(sizes[a] for a in nb) * sizes[v], v)


def _spanning_tree(cliques: list[Clique]) -> list[tuple[int, int]]:
    """Kruskal: maximum spanning tree on separator size; components joined by empty ones."""
    root = list(range(len(cliques)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    pairs = [(i, j) for i in range(len(cliques)) for j in range(i + 1, len(cliques))]
    pairs.sort(key=lambda e: -len(set(cliques[e[0]]) & set(cliques[e[1]])))
    edges = []
    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            root[ri] = rj
            edges.append((i, j))
    return edges


def _rooted(cliques: list[Clique], edges: list[tuple[int, int]]) -> JunctionTree:
    """Breadth-first order from the largest clique, so parents come before children."""
    nbrs: dict[int, list[int]] = {i: [] for i in range(len(cliques))}
    for i, j in edges:
        nbrs[i].append(j)
        nbrs[j].append(i)
    start = max(range(len(cliques)), key=lambda i: (len(cliques[i]), -i))
    order, parent_of = [start], {start: -1}
    for i in order:  # grows while iterating: a BFS queue
        for j in nbrs[i]:
            if j not in parent_of:
                parent_of[j] = i
                order.append(j)
    pos = {c: k for k, c in enumerate(order)}
    parents = [pos[parent_of[c]] if parent_of[c] >= 0 else -1 for c in order]
    return JunctionTree([cliques[c] for c in order], parents)


def junction_tree(sizes: Sequence[int], cliques: Sequence[Clique]) -> JunctionTree:
    """The junction tree of the cliques' interaction graph over all len(sizes) attributes."""
    elim = _elimination_cliques(sizes, cliques)
    tree_cliques = sorted(_maximal([tuple(sorted(s)) for s in elim]))
    return _rooted(tree_cliques, _spanning_tree(tree_cliques))


def model_size_mb(sizes: Sequence[int], cliques: Sequence[Clique]) -> float:
    """Cells of the junction tree of `cliques`, as float64 megabytes (AIM's size limit)."""
    tree = junction_tree(sizes, cliques)
    return sum(_cells(sizes, c) for c in tree.cliques) * 8 / 2**20


# ---------------------------------------------------------------- belief propagation


def _tree_potentials(
    sizes: Sequence[int],
    tree: JunctionTree,
    factors: list[Clique],
    home: list[int],
    theta: list[torch.Tensor],
    out: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Each tree clique's log potential: the sum of the factors it is home to (written into
    `out`, buffers of the cliques' shapes, when given)."""
    if out is None:
        out = [torch.empty([sizes[a] for a in c], dtype=_F64) for c in tree.cliques]
    filled = [False] * len(out)
    for f, h, t in zip(factors, home, theta, strict=True):
        v = _view(t, f, tree.cliques[h], sizes)
        out[h].add_(v) if filled[h] else out[h].copy_(v)  # copy_ broadcasts
        filled[h] = True
    for buf, done in zip(out, filled, strict=True):
        if not done:
            buf.zero_()
    return out


def _calibrate(
    sizes: Sequence[int],
    tree: JunctionTree,
    logpot: list[torch.Tensor],
    scratch: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], float]:
    """Log-space belief propagation; returns (log marginals of the tree cliques, log Z).

    Works in place on `logpot` (which it consumes): on adult-sized trees one clique has ~10^7
    cells, and fresh tables every pass cost more in page faults than in arithmetic.
    """
    cl, parent, kids = tree.cliques, tree.parent, tree.children()
    belief = list(logpot)  # partial beliefs after the upward pass, calibrated after the downward
    up: list[torch.Tensor | None] = [None] * len(cl)  # log message to the parent, sep axes only
    for i in reversed(range(len(cl))):  # children come after parents in the order
        for k in kids[i]:
            belief[i].add_(_view(up[k], tree.separator(k), cl[i], sizes))
        if parent[i] >= 0:
            sep = tree.separator(i)
            up[i] = _lse_onto(belief[i], cl[i], sep, scratch).reshape([sizes[a] for a in sep])
    for i in range(1, len(cl)):
        p, sep = parent[i], tree.separator(i)
        # the parent's calibrated separator marginal holds the child's own message; take it out
        down = _lse_onto(belief[p], cl[p], sep, scratch).reshape([sizes[a] for a in sep]) - up[i]
        belief[i].add_(_view(down, sep, cl[i], sizes))
    log_z = float(torch.logsumexp(belief[0].reshape(-1), 0))
    for b in belief:
        b.sub_(log_z)
    return belief, log_z


def _project_many(
    table: torch.Tensor, clique: Clique, targets: Sequence[Clique], sizes: Sequence[int]
) -> list[torch.Tensor]:
    """Sums of `table` onto each target, through cached intermediate tables.

    Each target is summed from the smallest table already made that contains it, dropping the
    largest unwanted attribute one at a time: several factors in one big clique then share
    the first, expensive passes (one pass over 8M cells instead of one per factor on adult).
    """
    made = {clique: table}
    out = []
    for f in targets:
        src = min((c for c in made if set(f) <= set(c)), key=lambda c: _cells(sizes, c))
        while src != f:
            drop = max((a for a in src if a not in f), key=lambda a: (sizes[a], a))
            smaller = tuple(a for a in src if a != drop)
            if smaller not in made:
                made[smaller] = made[src].sum(dim=src.index(drop))
            src = smaller
        out.append(made[f])
    return out


# ---------------------------------------------------------------- estimation


class _Fit:
    """The fixed structure of one estimation: factors, their homes, the routed measurements."""

    def __init__(self, sizes: Sequence[int], measurements: Sequence[Measurement]) -> None:
        self.sizes = tuple(sizes)
        self.factors = _maximal([m.clique for m in measurements])
        self.tree = junction_tree(self.sizes, self.factors)
        self.home = [_home(self.tree, f, self.sizes) for f in self.factors]
        self.by_home: dict[int, list[int]] = {}
        for k, h in enumerate(self.home):
            self.by_home.setdefault(h, []).append(k)
        # reused every iteration: the tree's tables, and scratch as big as the largest
        self.buffers = [torch.empty([sizes[a] for a in c], dtype=_F64) for c in self.tree.cliques]
        self.scratch = torch.empty(max(b.numel() for b in self.buffers), dtype=_F64)
        # each measurement's gradient lands on one factor containing it (the smallest)
        self.route = [_smallest_superset(self.factors, m.clique, self.sizes) for m in measurements]
        self.meas = list(measurements)
        for m in self.meas:
            want = [self.sizes[a] for a in m.clique]
            if list(m.values.shape) != want:
                raise ValueError(f"measurement on {m.clique}: shape {m.values.shape} != {want}")

    def lipschitz(self) -> float:
        """Lipschitz constant of dL/dmu: per factor, sum_M |F| / (|M| sigma_M^2); the max."""
        block = [0.0] * len(self.factors)
        for m, r in zip(self.meas, self.route, strict=True):
            ratio = _cells(self.sizes, self.factors[r]) / _cells(self.sizes, m.clique)
            block[r] += ratio / m.noise**2
        return max(block, default=1.0)

    def factor_marginals(self, theta: list[torch.Tensor], total: float) -> list[torch.Tensor]:
        """mu_F in counts: BP on the tree, then each factor summed out of its home clique."""
        logpot = _tree_potentials(
            self.sizes, self.tree, self.factors, self.home, theta, self.buffers
        )
        logmarg, _ = _calibrate(self.sizes, self.tree, logpot, self.scratch)
        out: list[torch.Tensor | None] = [None] * len(self.factors)
        for h, members in self.by_home.items():
            prob = logmarg[h].exp_()  # in place: the log table is not needed any more
            fs = [self.factors[k] for k in members]
            margs = _project_many(prob, self.tree.cliques[h], fs, self.sizes)
            for k, m in zip(members, margs, strict=True):
                out[k] = m * total
        return out

    def loss_grad(self, mu: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
        """L(mu) = 1/2 sum ||(mu_M - y_M)/sigma||^2 and dL/dmu_F for every factor."""
        grad = [torch.zeros_like(t) for t in mu]
        loss = 0.0
        for m, r in zip(self.meas, self.route, strict=True):
            f = self.factors[r]
            diff = (_sum_onto(mu[r], f, m.clique) - m.values) / m.noise
            loss += 0.5 * float((diff * diff).sum())
            grad[r] += _view(diff / m.noise, m.clique, f, self.sizes)
        return loss, grad

    def loss(self, mu: list[torch.Tensor]) -> float:
        total = 0.0
        for m, r in zip(self.meas, self.route, strict=True):
            diff = (_sum_onto(mu[r], self.factors[r], m.clique) - m.values) / m.noise
            total += 0.5 * float((diff * diff).sum())
        return total


def _smallest_superset(cliques: Sequence[Clique], clique: Clique, sizes: Sequence[int]) -> int:
    inside = [i for i, c in enumerate(cliques) if set(clique) <= set(c)]
    if not inside:
        raise ValueError(f"no clique contains {clique}")
    return min(inside, key=lambda i: (_cells(sizes, cliques[i]), i))


def _home(tree: JunctionTree, clique: Clique, sizes: Sequence[int]) -> int:
    return _smallest_superset(tree.cliques, clique, sizes)


def mvu_total(measurements: Sequence[Measurement]) -> float:
    """The records, estimated as mbi does: the inverse-variance weighted mean of the
    measurements' sums (the sum of m cells has variance m sigma^2); at least 1."""
    if not measurements:
        return 1.0
    w = [1.0 / (m.noise**2 * m.values.numel()) for m in measurements]
    s = [float(m.values.sum()) for m in measurements]
    return max(1.0, sum(a * b for a, b in zip(w, s, strict=True)) / sum(w))


def _warm_theta(fit: _Fit, warm: GraphicalModel | None) -> list[torch.Tensor]:
    """Zero potentials, plus a previous model's factors added into factors that contain them
    (AIM only adds measurements, so the old factors always fit in the new ones)."""
    theta = [torch.zeros([fit.sizes[a] for a in f], dtype=_F64) for f in fit.factors]
    if warm is None:
        return theta
    if tuple(warm.sizes) != fit.sizes:
        raise ValueError("warm start from a model on another domain")
    for f, t in warm.potentials.items():
        r = _smallest_superset(fit.factors, f, fit.sizes)
        theta[r] += _view(t, f, fit.factors[r], fit.sizes)
    return theta


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return sum(float((x * y).sum()) for x, y in zip(a, b, strict=True))


def _mirror_descent(
    fit: _Fit, theta: list[torch.Tensor], total: float, iters: int
) -> tuple[list[torch.Tensor], float]:
    """Algorithm 1 with Armijo backtracking; returns (potentials, loss at them)."""
    alpha = STEP_START / (fit.lipschitz() * total)
    mu = fit.factor_marginals(theta, total)
    loss, grad = fit.loss_grad(mu)
    for _ in range(iters):
        trial = [t - alpha * g for t, g in zip(theta, grad, strict=True)]
        mu2 = fit.factor_marginals(trial, total)
        loss2, grad2 = fit.loss_grad(mu2)
        diff = [a - b for a, b in zip(mu, mu2, strict=True)]
        if loss - loss2 >= 0.5 * alpha * _dot(grad, diff):
            theta, mu, loss, grad = trial, mu2, loss2, grad2
            alpha *= STEP_GROWTH
        else:
            alpha *= 0.5
    return theta, loss


# ---------------------------------------------------------------- the model


class GraphicalModel:
    """A Markov random field over `sizes` with log-potentials on its factor cliques,
    calibrated on its junction tree. Marginals are counts summing to `total`."""

    def __init__(
        self, sizes: Sequence[int], potentials: dict[Clique, torch.Tensor], total: float
    ) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self.potentials = {tuple(c): t.to(_F64) for c, t in potentials.items()}
        self.total = float(total)
        self.tree = junction_tree(self.sizes, list(self.potentials))
        self.cliques = list(self.tree.cliques)
        factors = list(self.potentials)
        homes = [_home(self.tree, f, self.sizes) for f in factors]
        logpot = _tree_potentials(
            self.sizes, self.tree, factors, homes, list(self.potentials.values())
        )
        self._logmarg, self.log_z = _calibrate(self.sizes, self.tree, logpot)

    # ------------------------------------------------------------ fitting
    @classmethod
    def estimate(
        cls,
        sizes: Sequence[int],
        measurements: Sequence[Measurement],
        iters: int = 1000,
        warm: GraphicalModel | None = None,
        total: float | None = None,
    ) -> GraphicalModel:
        """Mirror descent (Private-PGM's) on L = 1/2 sum ||(mu_M - y_M) / sigma_M||^2.

        `warm`: a previous model whose potentials start this one (AIM re-estimates after
        every new measurement). `total`: the records; None estimates it from the measurements
        (inverse-variance weighted mean of their sums), as mbi does.
        """
        fit = _Fit(sizes, measurements)
        total = mvu_total(measurements) if total is None else float(total)
        theta, _ = _mirror_descent(fit, _warm_theta(fit, warm), total, iters)
        return cls(sizes, dict(zip(fit.factors, theta, strict=True)), total)

    def loss(self, measurements: Sequence[Measurement]) -> float:
        """1/2 sum ||(marginal_M - y_M) / sigma_M||^2 at this model (the estimator's loss)."""
        out = 0.0
        for m in measurements:
            diff = (self.marginal(m.clique) - m.values) / m.noise
            out += 0.5 * float((diff * diff).sum())
        return out

    # ------------------------------------------------------------ inference
    def marginal(self, clique: Sequence[int]) -> torch.Tensor:
        """Counts over `clique` (axes in the order given), summing to `total`.

        Inside a tree clique: a sum of the calibrated table. Otherwise: variable elimination
        on the tree's factorization of the smallest subtree that covers the clique.
        """
        q = tuple(sorted(set(clique)))
        if len(q) != len(clique):
            raise ValueError(f"repeated attribute in {clique}")
        inside = [i for i, c in enumerate(self.cliques) if set(q) <= set(c)]
        if inside:
            i = min(inside, key=lambda k: _cells(self.sizes, self.cliques[k]))
            prob = _sum_onto(torch.exp(self._logmarg[i]), self.cliques[i], q)
        else:
            prob = self._eliminate(q)
        out = prob * self.total
        return out.permute([q.index(a) for a in clique]) if q else out

    def _eliminate(self, q: Clique) -> torch.Tensor:
        keep = _covering_subtree(self.tree, q)
        factors = []
        for i in keep:
            c = self.cliques[i]
            p = torch.exp(self._logmarg[i])
            if i != keep[0]:  # p(C | sep) = p(C) / p(sep); 0/0 stays 0
                sep = self.tree.separator(i)
                ps = _view(_sum_onto(p, c, sep), sep, c, self.sizes)
                p = torch.where(ps > 0, p / ps.clamp_min(1e-300), torch.zeros_like(p))
            factors.append((c, p))
        return _variable_elimination(self.sizes, factors, q)

    def log_prob(self, rows: torch.Tensor) -> torch.Tensor:
        """log p(row) for int rows [n, d]: sum of the factors' potentials minus log Z."""
        rows = rows.long()
        out = torch.full((rows.shape[0],), -self.log_z, dtype=_F64)
        for c, t in self.potentials.items():
            out += t[tuple(rows[:, a] for a in c)]
        return out

    def given(self, attribute: int, level: int | list[int]) -> GraphicalModel:
        """The model of the rows whose `attribute` is `level` (or one of the levels listed):
        the evidence entered into a factor holding the attribute (the other levels' potential
        set to IMPOSSIBLE), so its marginals and samples are the conditional ones."""
        pots = dict(self.potentials)
        home = next((c for c in pots if attribute in c), (attribute,))
        table = pots.get(home, torch.zeros(self.sizes[attribute], dtype=_F64)).clone()
        axis = home.index(attribute)
        others = torch.ones(self.sizes[attribute], dtype=torch.bool)
        others[level] = False
        table[(slice(None),) * axis + (others,)] = IMPOSSIBLE
        pots[home] = table
        return GraphicalModel(self.sizes, pots, self.total)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n i.i.d. rows [n, d] (int64), ancestral down the junction tree; every draw
        comes from `generator` (one uniform per row per clique)."""
        rows = torch.zeros((n, len(self.sizes)), dtype=torch.long)
        for i, c in enumerate(self.cliques):
            sep = self.tree.separator(i) if i > 0 else ()
            rest = tuple(a for a in c if a not in sep)
            cond = _conditional_table(torch.exp(self._logmarg[i]), c, sep, rest, self.sizes)
            s_idx = _flat_index(rows, sep, self.sizes)
            u = torch.rand(n, dtype=_F64, generator=generator)
            r_idx = _inverse_cdf(cond, s_idx, u)
            _unflatten_into(rows, r_idx, rest, self.sizes)
        return rows

    # ------------------------------------------------------------ persistence
    def state(self) -> dict[str, torch.Tensor]:
        """Plain tensors only: "total" and "potential/<a>.<b>..." per factor clique (the key
        names carry the JSON-able clique list; the tree is rebuilt deterministically)."""
        out = {"total": torch.tensor(self.total, dtype=_F64)}
        for c, t in self.potentials.items():
            out["potential/" + ".".join(str(a) for a in c)] = t.contiguous()
        return out

    @classmethod
    def from_state(cls, sizes: Sequence[int], state: dict[str, torch.Tensor]) -> GraphicalModel:
        pots = {}
        for k, t in state.items():
            if k.startswith("potential/"):
                name = k.split("/", 1)[1]
                pots[tuple(int(a) for a in name.split(".")) if name else ()] = t
        return cls(sizes, pots, float(state["total"]))


# ---------------------------------------------------------------- inference helpers


def _covering_subtree(tree: JunctionTree, q: Clique) -> list[int]:
    """Tree cliques of the smallest subtree covering q, parents before children.

    Prune leaves whose q-attributes are all in their separator (the running intersection
    property then puts them in the neighbour): summing such a leaf's p(C | sep) gives 1.
    """
    alive = set(range(len(tree.cliques)))
    qs = set(q)
    changed = True
    while changed and len(alive) > 1:
        changed = False
        for i in sorted(alive):
            nb = [j for j in alive if j != i and (tree.parent[j] == i or tree.parent[i] == j)]
            if len(nb) != 1:
                continue
            shared = set(tree.cliques[i]) & set(tree.cliques[nb[0]])
            if (set(tree.cliques[i]) & qs) <= shared:
                alive.discard(i)
                changed = True
    # the topmost survivor is the subtree's root; it keeps its full marginal
    return sorted(alive)


def _variable_elimination(
    sizes: Sequence[int], factors: list[tuple[Clique, torch.Tensor]], q: Clique
) -> torch.Tensor:
    """Sum the product of the factors down to q, eliminating the cheapest variable first."""
    pool = list(factors)
    hidden = {a for c, _ in pool for a in c} - set(q)
    while hidden:
        v = min(hidden, key=lambda h: (_scope_cells(sizes, pool, h), h))
        hidden.discard(v)
        used = [(c, t) for c, t in pool if v in c]
        pool = [(c, t) for c, t in pool if v not in c]
        scope, prod = _product(sizes, used)
        rest = tuple(a for a in scope if a != v)
        pool.append((rest, _sum_onto(prod, scope, rest)))
    scope, prod = _product(sizes, pool)
    return _sum_onto(prod, scope, q)


def _scope_cells(sizes: Sequence[int], pool: list[tuple[Clique, torch.Tensor]], v: int) -> int:
    """Cells of the factor that eliminating v would build."""
    return _cells(sizes, tuple({a for c, _ in pool if v in c for a in c}))


def _product(
    sizes: Sequence[int], factors: list[tuple[Clique, torch.Tensor]]
) -> tuple[Clique, torch.Tensor]:
    scope = tuple(sorted({a for c, _ in factors for a in c}))
    prod = torch.ones([sizes[a] for a in scope], dtype=_F64)
    for c, t in factors:
        prod = prod * _view(t, c, scope, sizes)
    return scope, prod


def _conditional_table(
    prob: torch.Tensor, c: Clique, sep: Clique, rest: Clique, sizes: Sequence[int]
) -> torch.Tensor:
    """p(rest | sep) as a [cells(sep), cells(rest)] matrix (rows with no mass: uniform)."""
    order = [c.index(a) for a in sep] + [c.index(a) for a in rest]
    table = prob.permute(order).reshape(_cells(sizes, sep), _cells(sizes, rest))
    mass = table.sum(dim=1, keepdim=True)
    return torch.where(mass > 0, table / mass.clamp_min(1e-300), 1.0 / table.shape[1])


def _flat_index(rows: torch.Tensor, clique: Clique, sizes: Sequence[int]) -> torch.Tensor:
    idx = torch.zeros(rows.shape[0], dtype=torch.long)
    for a in clique:
        idx = idx * sizes[a] + rows[:, a]
    return idx


def _unflatten_into(rows: torch.Tensor, idx: torch.Tensor, clique: Clique, sizes) -> None:
    for a in reversed(clique):
        rows[:, a] = idx % sizes[a]
        idx = idx // sizes[a]


def _inverse_cdf(cond: torch.Tensor, s_idx: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Row k draws from cond[s_idx[k]] with uniform u[k]: one searchsorted over all groups.

    Group s's CDF is shifted to [s, s + 1], so the flattened keys are sorted and the draw is
    the count of keys <= s + u, less the s * width keys of the earlier groups.
    """
    groups, width = cond.shape
    cdf = torch.cumsum(cond, dim=1)
    cdf[:, -1] = 1.0  # rounding must not leave mass above the last level
    keys = (cdf + torch.arange(groups, dtype=_F64)[:, None]).reshape(-1)
    pos = torch.searchsorted(keys, s_idx.to(_F64) + u, right=True)
    return (pos - s_idx * width).clamp_(0, width - 1)
