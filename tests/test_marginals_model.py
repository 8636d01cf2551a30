"""plugkit.marginals.model: junction tree, belief propagation, mirror descent, sampling.

The reference is brute force: on a tiny domain the full joint of a model is
exp(sum of its potentials) / Z over every cell, and every marginal is a sum of it.
"""

import itertools
import math

import pytest
import torch

from plugkit.marginals.model import GraphicalModel, Measurement, junction_tree, model_size_mb

F64 = torch.float64
SIZES = (2, 3, 4, 2, 3)
# a cycle 0-1-2-3-4-0: not chordal, so the tree needs fill-in and 3-attribute cliques
TRUE_CLIQUES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]
TOTAL = 1000.0


def brute_joint(model: GraphicalModel) -> torch.Tensor:
    """The model's joint in counts, from its potentials alone (not from its inference)."""
    grid = torch.tensor(list(itertools.product(*[range(s) for s in model.sizes])))
    logp = torch.zeros(len(grid), dtype=F64)
    for c, t in model.potentials.items():
        logp += t[tuple(grid[:, a] for a in c)]
    p = torch.softmax(logp, 0)
    return (p * model.total).reshape(model.sizes)


def brute_marginal(joint: torch.Tensor, q: tuple[int, ...]) -> torch.Tensor:
    return joint.sum(dim=[i for i in range(joint.dim()) if i not in q])


@pytest.fixture(scope="module")
def truth() -> GraphicalModel:
    g = torch.Generator().manual_seed(7)
    pots = {c: torch.randn([SIZES[a] for a in c], generator=g, dtype=F64) for c in TRUE_CLIQUES}
    return GraphicalModel(SIZES, pots, TOTAL)


MEASURED = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4), (2,)]


def test_given_is_the_joint_restricted_to_the_evidence(truth):
    joint = brute_joint(truth)
    restricted = joint.select(2, 3)  # attribute 2 at level 3
    wanted = restricted / restricted.sum()
    given = truth.given(2, 3)
    for q in [(0, 1), (3, 4), (0, 4)]:
        got = given.marginal(tuple(a for a in (*q, 2)))  # the conditional, level 3 only
        assert torch.equal(got.sum(dim=[i for i in range(len(q))]).nonzero().flatten(),
                           torch.tensor([3]))
        left = [a if a < 2 else a - 1 for a in q]  # q's axes once attribute 2 is dropped
        want = brute_marginal(wanted, tuple(left)) * truth.total
        torch.testing.assert_close(got.select(len(q), 3), want, rtol=1e-9, atol=1e-9)
    rows = given.sample(500, torch.Generator().manual_seed(0))
    assert (rows[:, 2] == 3).all()


@pytest.fixture(scope="module")
def fitted(truth) -> tuple[GraphicalModel, list[Measurement]]:
    exact = brute_joint(truth)
    meas = [Measurement(c, brute_marginal(exact, c), 1.0) for c in MEASURED]
    return GraphicalModel.estimate(SIZES, meas, iters=3000), meas


def test_junction_tree_is_valid():
    tree = junction_tree(SIZES, TRUE_CLIQUES)
    covered = {a for c in tree.cliques for a in c}
    assert covered == set(range(len(SIZES)))
    for c in TRUE_CLIQUES:  # every factor fits in one tree clique
        assert any(set(c) <= set(t) for t in tree.cliques)
    # running intersection: the cliques holding any attribute form a connected subtree
    for a in range(len(SIZES)):
        holders = {i for i, c in enumerate(tree.cliques) if a in c}
        tops = [i for i in holders if tree.parent[i] not in holders]
        assert len(tops) == 1, (a, tree.cliques, tree.parent)
    assert max(len(c) for c in tree.cliques) == 3  # a 5-cycle triangulates into triangles


def test_chordal_graph_gets_no_fill():
    tree = junction_tree((3, 3, 3, 3), [(0, 1), (1, 2), (2, 3)])
    assert sorted(tree.cliques) == [(0, 1), (1, 2), (2, 3)]


def test_model_size_mb_by_hand():
    # a path 0-1-2 plus a lone attribute 3: cliques (0,1), (1,2), (3,)
    sizes = (10, 20, 30, 7)
    cells = 10 * 20 + 20 * 30 + 7
    assert model_size_mb(sizes, [(0, 1), (1, 2)]) == pytest.approx(cells * 8 / 2**20, rel=0)
    # a triangle needs one clique of all three
    cells = 10 * 20 * 30 + 7
    got = model_size_mb(sizes, [(0, 1), (1, 2), (0, 2)])
    assert got == pytest.approx(cells * 8 / 2**20, rel=0)


def test_marginals_match_brute_force(truth):
    joint = brute_joint(truth)
    for q in [(0, 1), (0, 2), (1, 3), (2, 4), (0, 2, 4), (1, 3, 4), (4,), ()]:
        want = brute_marginal(joint, q)
        torch.testing.assert_close(truth.marginal(q), want, rtol=1e-10, atol=1e-9)
    # axes follow the order asked for
    want = brute_marginal(joint, (1, 3)).T
    torch.testing.assert_close(truth.marginal((3, 1)), want, rtol=1e-10, atol=1e-9)


def test_log_prob_matches_brute_force(truth):
    joint = brute_joint(truth) / TOTAL
    grid = torch.tensor(list(itertools.product(*[range(s) for s in SIZES])))
    torch.testing.assert_close(truth.log_prob(grid), joint.log().reshape(-1), rtol=0, atol=1e-10)


def test_estimate_recovers_exact_marginals(fitted):
    model, meas = fitted
    assert model.total == pytest.approx(TOTAL, rel=1e-12)  # estimated from the measurements
    for m in meas:
        err = (model.marginal(m.clique) - m.values).abs().max() / TOTAL
        assert err < 1e-6, (m.clique, float(err))


def test_unmeasured_pair_from_the_models_own_joint(fitted):
    model, _ = fitted
    joint = brute_joint(model)
    for q in [(0, 2), (1, 3), (1, 4), (0, 2, 3)]:  # none inside a measured clique
        torch.testing.assert_close(
            model.marginal(q), brute_marginal(joint, q), rtol=1e-9, atol=1e-8
        )


def test_unmeasured_attribute_is_uniform():
    sizes = (3, 4, 5)
    y = torch.tensor([[10.0, 20, 30, 40], [5, 5, 5, 5], [1, 2, 3, 4]], dtype=F64)
    model = GraphicalModel.estimate(sizes, [Measurement((0, 1), y, 1.0)], iters=200)
    torch.testing.assert_close(model.marginal((2,)), torch.full((5,), model.total / 5, dtype=F64))
    # and independent of the rest
    outer = model.marginal((0, 1))[..., None] * model.marginal((2,)) / model.total
    torch.testing.assert_close(model.marginal((0, 1, 2)), outer)


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    n = counts.sum()
    keep = probs > 0
    expected = probs[keep] * n
    assert counts[~keep].sum() == 0  # no draws where the model puts no mass
    return float(((counts[keep] - expected) ** 2 / expected).sum()), int(keep.sum()) - 1


def frequencies(rows: torch.Tensor, q: tuple[int, ...], sizes) -> torch.Tensor:
    idx = torch.zeros(len(rows), dtype=torch.long)
    for a in q:
        idx = idx * sizes[a] + rows[:, a]
    return torch.bincount(idx, minlength=math.prod(sizes[a] for a in q)).to(F64)


def test_sample_frequencies_chi_square(truth):
    n = 200_000
    rows = truth.sample(n, torch.Generator().manual_seed(3))
    assert rows.shape == (n, len(SIZES)) and rows.dtype == torch.long
    tree = truth.tree
    inside = tree.cliques[-1]  # a tree clique
    across = next(  # a pair no tree clique holds: its attributes meet only through the tree
        q
        for q in itertools.combinations(range(len(SIZES)), 2)
        if not any(set(q) <= set(c) for c in tree.cliques)
    )
    for q in [inside, across]:
        probs = truth.marginal(q).reshape(-1) / truth.total
        stat, dof = chi_square(frequencies(rows, q, SIZES), probs)
        # mean dof, sd sqrt(2 dof): 6 sd is a failure rate far below 1e-6
        assert stat < dof + 6 * math.sqrt(2 * dof), (q, stat, dof)


def test_sample_is_reproducible(truth):
    a = truth.sample(1000, torch.Generator().manual_seed(11))
    b = truth.sample(1000, torch.Generator().manual_seed(11))
    c = truth.sample(1000, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_state_round_trip(fitted):
    model, meas = fitted
    state = model.state()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    back = GraphicalModel.from_state(model.sizes, {k: v.clone() for k, v in state.items()})
    assert back.total == model.total and back.cliques == model.cliques
    for q in [m.clique for m in meas] + [(0, 2), (1, 3, 4)]:
        assert torch.equal(back.marginal(q), model.marginal(q))


def test_warm_start_needs_fewer_iterations(truth):
    joint = brute_joint(truth)
    first = [Measurement(c, brute_marginal(joint, c), 1.0) for c in [(0, 1), (1, 2), (2, 3)]]
    more = first + [Measurement(c, brute_marginal(joint, c), 1.0) for c in [(3, 4), (0, 4)]]
    prev = GraphicalModel.estimate(SIZES, first, iters=1500)
    cold = GraphicalModel.estimate(SIZES, more, iters=800).loss(more)
    warm = GraphicalModel.estimate(SIZES, more, iters=400, warm=prev).loss(more)
    # half the iterations, a better fit (by ~40x here; an ignored warm start loses by ~50x)
    assert warm < cold / 5, (warm, cold)
