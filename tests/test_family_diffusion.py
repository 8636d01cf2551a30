"""The diffusion family on tables and sequences: the conformance suite, the schedule, the exact
categorical posterior, that it learns a dependence between columns, `where` by inpainting, and
that it learns the shape of windows."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import table_batch, table_info

from plugkit import data, options
from plugkit.errors import UsageError
from plugkit.families.diffusion import (
    CLIP,
    Diffusion,
    categorical_step,
    cosine_schedule,
    schedule_of,
)
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec
from plugkit.testing import FamilyTests


class TestDiffusionTable(FamilyTests):
    family = Diffusion
    info = table_info()
    options = ["hidden=32", "layers=2", "timesteps=20", "lr=3e-3"]

    def batch(self):
        return table_batch(self.info)


def _waves(n=256, length=16):
    """Sine windows of random phase, two features a quarter period apart: shape, not noise."""
    phase = np.random.default_rng(0).uniform(0, 2 * np.pi, (n, 1))
    steps = np.arange(length)[None] * 2 * np.pi / length
    return np.stack([np.sin(steps + phase), np.cos(steps + phase)], -1).astype(np.float32)


class TestDiffusionSequence(FamilyTests):
    family = Diffusion
    info = DataInfo("sequence", {"length": 16, "features": 2, "mean": [0.0, 0.0],
                                 "std": [1.0, 1.0]})
    options = ["hidden=32", "layers=2", "timesteps=20", "lr=3e-3"]

    def batch(self):
        return Batch(torch.from_numpy(_waves(32)))


def test_cosine_schedule_runs_from_data_to_noise():
    abar = cosine_schedule(100)
    assert abar[0] == 1 and (abar[1:] < abar[:-1]).all() and abar[-1] < 1e-3
    assert (abar[1:] / abar[:-1]).min() >= 0.001  # every beta at most 0.999


def test_the_categorical_step_is_the_exact_posterior():
    """Against the posterior written out term by term: sum over x_0 of p(x_0) q(x_{t-1} | x_t,
    x_0), each q by Bayes from the forward process."""
    fam = TestDiffusionTable().build()
    k, t = 4, 7
    abar_t, abar_prev = float(fam.abar[t]), float(fam.abar[t - 1])
    alpha = abar_t / abar_prev
    logits = torch.randn(1, k, dtype=torch.float64)
    x_t = F.one_hot(torch.tensor([2]), k).double()
    p0 = logits.softmax(1)[0]
    expected = torch.zeros(k, dtype=torch.float64)
    for x0 in range(k):
        for j in range(k):
            forward = alpha * (j == 2) + (1 - alpha) / k  # q(x_t = 2 | x_{t-1} = j)
            prior = abar_prev * (j == x0) + (1 - abar_prev) / k  # q(x_{t-1} = j | x_0)
            evidence = abar_t * (x0 == 2) + (1 - abar_t) / k  # q(x_t = 2 | x_0)
            expected[j] += p0[x0] * forward * prior / evidence
    draws = torch.stack([categorical_step(fam.abar, x_t, logits, t, t - 1,
                                          torch.Generator().manual_seed(s))
                         for s in range(4000)])[:, 0]  # (4000, K) one-hot
    assert expected.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(draws.mean(0).numpy(), expected.numpy(), atol=0.03)


def _paired_table(n=400):
    """A category that decides the sign of a number: what an independent model cannot draw."""
    rng = np.random.default_rng(0)
    side = rng.choice(["left", "right"], n)
    value = np.where(side == "left", -1.0, 1.0) * rng.uniform(2, 3, n)
    return pd.DataFrame({"value": value.round(3), "side": side})


def test_it_learns_how_columns_go_together_and_draws_where_by_inpainting():
    ds = data.load(_paired_table())
    torch.manual_seed(0)
    chosen = options.parse(Diffusion.Options, ["hidden=64", "timesteps=30", "lr=3e-3"],
                           "diffusion")
    fam = Diffusion(chosen, DataInfo("table", ds.meta), torch.device("cpu"))
    x, _ = codec.encode(ds)
    for step in range(300):
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))[:64]
        fam.train_step(Batch(x[rows]))
    settings = options.build(Diffusion.Settings, {}, "diffusion", "sampler setting")
    drawn = codec.decode(fam.info, fam.sample(400, generator=torch.Generator().manual_seed(1),
                                              settings=settings))
    agree = ((drawn["value"] < 0) == (drawn["side"] == "left")).mean()
    assert agree > 0.9, agree  # independent columns would agree half the time
    assert 0.3 < (drawn["side"] == "left").mean() < 0.7
    right = options.build(Diffusion.Settings, {"where": "side=right"}, "diffusion",
                          "sampler setting")
    held = codec.decode(fam.info, fam.sample(200, generator=torch.Generator().manual_seed(2),
                                             settings=right))
    assert (held["side"] == "right").all()
    assert (held["value"] > 0).mean() > 0.9  # the other column follows the category
    # respaced: 6 of the 30 steps, 5 times faster, draw rows nearly as good (400 rows: 0.89)
    fast = options.build(Diffusion.Settings, {"steps": 6}, "diffusion", "sampler setting")
    quick = codec.decode(fam.info, fam.sample(400, generator=torch.Generator().manual_seed(1),
                                              settings=fast))
    assert ((quick["value"] < 0) == (quick["side"] == "left")).mean() > 0.85
    every = options.build(Diffusion.Settings, {"steps": 30}, "diffusion", "sampler setting")
    assert torch.equal(fam.sample(9, generator=torch.Generator().manual_seed(3), settings=every),
                       fam.sample(9, generator=torch.Generator().manual_seed(3)))


def test_respacing_runs_from_t_to_zero_in_even_jumps():
    assert schedule_of(0, 4) == [(4, 3), (3, 2), (2, 1), (1, 0)] == schedule_of(9, 4)
    assert schedule_of(4, 100) == [(100, 75), (75, 50), (50, 25), (25, 0)]
    assert schedule_of(1, 100) == [(100, 0)]


def test_sampling_stays_finite_whatever_the_denoiser_predicts():
    """Near t = T, x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) multiplies the error of eps
    by ~2,000 (T = 100): unclipped, the offsets overflowed on adult after 142 epochs."""
    chosen = options.parse(Diffusion.Options, ["timesteps=100", "hidden=16"], "diffusion")
    fam = Diffusion(chosen, TestDiffusionTable.info, torch.device("cpu"))  # untrained
    with torch.no_grad():
        fam.net.out.weight.mul_(100)  # predictions far from any eps
    rows = fam.sample(50, generator=torch.Generator().manual_seed(0))
    assert rows.isfinite().all() and rows[:, fam.data.offsets].abs().max() <= CLIP


def test_sequences_come_out_with_the_shape_of_the_windows():
    """Trained briefly on sine windows, the samples move like sines: consecutive values close
    (noise would jump by ~1.4 std), and the two features keep a quarter period apart."""
    torch.manual_seed(0)
    chosen = options.parse(Diffusion.Options, ["hidden=64", "timesteps=30", "lr=3e-3"],
                           "diffusion")
    fam = Diffusion(chosen, TestDiffusionSequence.info, torch.device("cpu"))
    x = torch.from_numpy(_waves())
    for step in range(300):
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))[:64]
        fam.train_step(Batch(x[rows]))
    drawn = fam.sample(200, generator=torch.Generator().manual_seed(1)).numpy()
    jump = np.abs(np.diff(drawn, axis=1)).mean()
    assert jump < 0.6, jump  # real windows: 0.25
    radius = np.sqrt((drawn ** 2).sum(-1))  # sin^2 + cos^2 = 1 for real windows
    assert abs(np.median(radius) - 1) < 0.25, np.median(radius)
    with pytest.raises(UsageError, match="this run's data is sequences"):
        fam.sample(2, generator=torch.Generator(), settings=Diffusion.Settings(where="a=b"))
