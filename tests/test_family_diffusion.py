"""The diffusion family on tables: the conformance suite, the schedule, the exact categorical
posterior, that it learns a dependence between columns, and `where` by inpainting."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import table_batch, table_info

from plugkit import data, options
from plugkit.families.diffusion import CLIP, Diffusion, cosine_schedule
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec
from plugkit.testing import FamilyTests


class TestDiffusionTable(FamilyTests):
    family = Diffusion
    info = table_info()
    options = ["hidden=32", "layers=2", "timesteps=20", "lr=3e-3"]

    def batch(self):
        return table_batch(self.info)


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
    draws = torch.stack([fam._categorical_step(x_t, logits, t, torch.Generator().manual_seed(s))
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


def test_sampling_stays_finite_whatever_the_denoiser_predicts():
    """Near t = T, x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) multiplies the error of eps
    by ~2,000 (T = 100): unclipped, the offsets overflowed on adult after 142 epochs."""
    chosen = options.parse(Diffusion.Options, ["timesteps=100", "hidden=16"], "diffusion")
    fam = Diffusion(chosen, TestDiffusionTable.info, torch.device("cpu"))  # untrained
    with torch.no_grad():
        fam.net.out.weight.mul_(100)  # predictions far from any eps
    rows = fam.sample(50, generator=torch.Generator().manual_seed(0))
    assert rows.isfinite().all() and rows[:, fam.offsets].abs().max() <= CLIP
