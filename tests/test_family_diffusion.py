"""The diffusion family on tables, sequences and images: the conformance suite, the schedule,
the exact categorical posterior, that it learns a dependence between columns, `where` by
inpainting, that it learns the shape of windows, and on images DDIM, guidance and labels."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import table_batch, table_info
from safetensors.torch import load_file

from plugkit import data, options
from plugkit.errors import UsageError
from plugkit.families.diffusion import Diffusion, images
from plugkit.families.diffusion.steps import (
    CLIP,
    FixedNoise,
    categorical_posterior,
    categorical_step,
    cosine_schedule,
    ddim_step,
    min_snr_odds,
    schedule_of,
    steps_of,
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
                                 "std": [1.0, 1.0], "window_spread": [0.7, 0.7]})
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


def test_categorical_posterior_is_bayes_under_a_marginal_prior():
    """The sampler's posterior of a one-hot span whose noise draws from a prior m, against
    Bayes' rule written out category by category in float64: for the predicted x_0 (p0),
    sum_k p0_k q(x_t | x_s) q(x_s | x_0 = k) / q(x_t | x_0 = k), with
    q(b | a) = alpha [a = b] + (1 - alpha) m_b, for a plain step and a respaced jump."""
    gen = torch.Generator().manual_seed(0)
    abar = cosine_schedule(100)
    k, n = 5, 7
    prior = torch.rand(k, generator=gen, dtype=torch.float64) + 0.05
    prior /= prior.sum()
    logits = torch.randn(n, k, generator=gen, dtype=torch.float64)
    x_t = torch.nn.functional.one_hot(torch.randint(k, (n,), generator=gen), k).double()

    def q(alpha, b, a):  # q(b | a) of one jump with alpha
        return alpha * (a == b) + (1 - alpha) * prior[b]

    for t, s in ((50, 49), (80, 30), (1, 0)):
        got = categorical_posterior(abar, x_t.float(), logits, t, s, prior.float()).double()
        got /= got.sum(1, keepdim=True)
        p0 = logits.softmax(1)
        for row in range(n):
            i = int(x_t[row].argmax())
            want = torch.zeros(k, dtype=torch.float64)
            for kk in range(k):
                joint = torch.stack([q(abar[t] / abar[s], i, j) * q(abar[s], j, kk)
                                     for j in range(k)])
                want += p0[row, kk] * joint / joint.sum()
            torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-6)
    # the uniform prior's own arithmetic gives the same as m = 1 / K
    uniform = torch.full((k,), 1 / k)
    a = categorical_posterior(abar, x_t.float(), logits, 40, 39)
    b = categorical_posterior(abar, x_t.float(), logits, 40, 39, uniform)
    torch.testing.assert_close(a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True))


def test_table_noise_draws_each_column_toward_its_own_shares(tmp_path):
    """prior=marginal (the default): a category is noised toward the column's shares in the
    encoding (a category's count, a numeric column's mode weight; a missing flag stays
    uniform). A run from before the option (no "prior" in run.json) samples as it did."""
    from typer.testing import CliRunner

    from plugkit.cli import app
    from plugkit.formats import tabular

    table = pd.DataFrame({"city": ["rome"] * 30 + ["oslo"] * 9 + [None],
                          "age": [20.0] * 28 + list(np.linspace(40, 60, 11)) + [np.nan]})
    encoding = tabular.fit(table, {"city": "categorical", "age": "numeric"})
    shares = tabular.shares(encoding)
    kinds = [s.kind for s in tabular.spans(encoding) if s.discrete]
    assert kinds == ["categorical", "mode", "missing"]
    np.testing.assert_allclose(shares[0], [9 / 40, 30 / 40, 1 / 40])  # oslo, rome, missing
    weights = [m["weight"] for m in encoding[1]["modes"]]
    np.testing.assert_allclose(shares[1], np.array(weights) / sum(weights))
    assert shares[2] is None
    encoding[0]["counts"] = [5, 0, -2]  # a private encoding's noisy counts
    assert (tabular.shares(encoding)[0] > 0).all()

    runner, run = CliRunner(), tmp_path / "run"
    result = runner.invoke(app, ["train", "diffusion", "--data", "iris", "--epochs", "1", "-o",
                                 "hidden=16", "-o", "prior=uniform", "--out", str(run)])
    assert result.exit_code == 0, result.output

    def drawn():
        result = runner.invoke(app, ["sample", str(run), "--n", "20", "--out",
                                     str(tmp_path / "s.csv")])
        assert result.exit_code == 0, result.output
        return (tmp_path / "s.csv").read_text()

    before = drawn()
    record = json.loads((run / "run.json").read_text())
    del record["options"]["prior"]  # as an older version recorded it
    (run / "run.json").write_text(json.dumps(record))
    assert drawn() == before
    record["options"]["prior"] = "marginal"
    (run / "run.json").write_text(json.dumps(record))
    assert drawn() != before


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
    # the other column follows the category (independent columns: 0.5); over 20 seeds of
    # the training noise 0.93 +- 0.05, the lowest 0.835: a threshold every seed clears
    assert (held["value"] > 0).mean() > 0.8
    # respaced: 6 of the 30 steps, 5 times faster, draw rows nearly as good (400 rows: 0.89)
    fast = options.build(Diffusion.Settings, {"steps": 6}, "diffusion", "sampler setting")
    quick = codec.decode(fam.info, fam.sample(400, generator=torch.Generator().manual_seed(1),
                                              settings=fast))
    assert ((quick["value"] < 0) == (quick["side"] == "left")).mean() > 0.85
    every = options.build(Diffusion.Settings, {"steps": 30}, "diffusion", "sampler setting")
    assert torch.equal(fam.sample(9, generator=torch.Generator().manual_seed(3), settings=every),
                       fam.sample(9, generator=torch.Generator().manual_seed(3)))


def test_calibration_gives_a_sharpened_average_back_the_datas_shares():
    """A moving average of weights predicts categories more sharply than the weights around
    it; the offsets (option calibrate) refit its output bias to the rows, by the same
    cross-entropy. Here the average says "left" far too often; its offsets, fitted on
    noised rows, bring its mean prediction back to the rows' share."""
    ds = data.load(_paired_table())
    torch.manual_seed(0)
    chosen = options.parse(Diffusion.Options, ["hidden=32", "timesteps=20"], "diffusion")
    fam = Diffusion(chosen, DataInfo("table", ds.meta), torch.device("cpu"))
    assert set(fam.optimizers()) == {"adamw", "calibration"}
    assert "calibration.shift" in {f"{name}.{key}" for name, module in fam.modules().items()
                                   for key in module.state_dict()}
    x, _ = codec.encode(ds)
    (a, b), = fam.data.spans[-1:]  # side: left, right
    share = x[:, a:b].mean(0)

    def mean_prediction(net):
        fam.data.loss(net, fam.abar, x, None, FixedNoise(len(x), torch.device("cpu")))
        with torch.no_grad():
            return net(*fam.data.noised[:2])[:, a:b].softmax(1).mean(0)

    with torch.no_grad():
        fam.averaged.out.bias[a] += 1.5  # sharpened toward left
    assert (mean_prediction(fam.averaged.train()) - share).abs().max() > 0.15
    for _ in range(400):  # what train_step does every `every` steps
        fam.data.loss(fam.net.train(), fam.abar, x, None, FixedNoise(len(x), torch.device("cpu")))
        fam.calibration_optimizer.zero_grad()
        fam.data.calibration_loss(fam.averaged).backward()
        fam.calibration_optimizer.step()
    sampler = fam._sampler()
    sampler.train()  # so that loss() keeps its noised rows
    assert (mean_prediction(sampler) - share).abs().max() < 0.02


def test_a_private_table_run_fits_no_calibration():
    """DP-SGD trains the denoiser alone: offsets fitted to the rows would not be private."""
    ds = data.load(_paired_table())
    chosen = options.parse(Diffusion.Options, ["hidden=16"], "diffusion")
    fam = Diffusion(chosen, DataInfo("table", ds.meta, private=True), torch.device("cpu"))
    assert fam.calibration is None and set(fam.optimizers()) == {"adamw"}
    assert fam._sampler() is fam.averaged


def test_respacing_runs_from_t_to_zero_in_even_jumps():
    assert schedule_of(0, 4) == [(4, 3), (3, 2), (2, 1), (1, 0)] == schedule_of(9, 4)
    assert schedule_of(4, 100) == [(100, 75), (75, 50), (50, 25), (25, 0)]
    assert schedule_of(1, 100) == [(100, 0)]


def test_quadratic_respacing_takes_its_finest_steps_at_low_noise():
    pairs = schedule_of(100, 1000, power=2)
    times = [t for t, _ in pairs] + [0]
    assert times[0] == 1000 and times == sorted(times, reverse=True)
    assert pairs[-5:] == [(5, 4), (4, 3), (3, 2), (2, 1), (1, 0)]  # even: (10, 0) at the end
    assert 90 <= len(pairs) <= 100
    assert schedule_of(1000, 1000, power=2) == schedule_of(0, 1000)


def test_t_and_lr_are_the_modalitys_unless_given_and_sequences_sample_in_100_steps():
    def family(info, *chosen):
        return Diffusion(options.parse(Diffusion.Options, ["hidden=16", *chosen], "diffusion"),
                         info, torch.device("cpu"))

    assert family(table_info()).options.timesteps == 100
    assert family(TestDiffusionImage.info, "channels=8").options.timesteps == 100
    # the learning rate too: images 2e-3, the others 1e-3, unless given; the optimizer's own
    for info, rate in ((table_info(), 1e-3), (TestDiffusionImage.info, 2e-3),
                       (TestDiffusionSequence.info, 1e-3)):
        fam = family(info)
        assert fam.options.lr == rate == fam.optimizer.param_groups[0]["lr"]
        assert family(info, "lr=5e-4").optimizer.param_groups[0]["lr"] == 5e-4
    assert family(TestDiffusionImage.info).options.channels == 16
    fam = family(TestDiffusionSequence.info)
    assert fam.options.timesteps == 1000 and family(TestDiffusionSequence.info,
                                                    "timesteps=50").options.timesteps == 50
    passes = []
    fam.averaged.register_forward_hook(lambda *_: passes.append(1))
    fam.sample(3, generator=torch.Generator().manual_seed(0))
    assert len(passes) == len(schedule_of(100, 1000, power=2))
    passes.clear()
    fam.sample(3, generator=torch.Generator(), settings=Diffusion.Settings(steps=1000))
    assert len(passes) == 1000
    with pytest.raises(UsageError, match="at least 2, got 1"):
        options.parse(Diffusion.Options, ["timesteps=1"], "diffusion")


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


def _pixels(n, c, h, w, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


class TestDiffusionImage(FamilyTests):
    """Gray 8x8 without labels (the suite adds three classes where it checks conditioning)."""

    family = Diffusion
    info = DataInfo("image", {"channels": 1, "height": 8, "width": 8})
    options = ["channels=8", "timesteps=10", "lr=3e-3"]

    def batch(self):
        return Batch(_pixels(16, 1, 8, 8))


class TestDiffusionImageRGB(FamilyTests):
    """Labelled RGB of a size two halvings do not divide (the UNet pads and crops)."""

    family = Diffusion
    info = DataInfo("image", {"channels": 3, "height": 10, "width": 13}, ["a", "b", "c"])
    options = ["channels=8", "timesteps=10", "lr=3e-3"]

    def batch(self):
        return Batch(_pixels(12, 3, 10, 13), torch.arange(12) % 3)


def _image_family(opts=("channels=8", "timesteps=10")):
    """An untrained family on TestDiffusionImageRGB's labelled RGB images."""
    torch.manual_seed(0)
    chosen = options.parse(Diffusion.Options, list(opts), "diffusion")
    return Diffusion(chosen, TestDiffusionImageRGB.info, torch.device("cpu"))


def _draw(fam, n=4, seed=0, labels=None, **settings):
    chosen = options.build(Diffusion.Settings, settings, "diffusion", "sampler setting")
    return fam.sample(n, generator=torch.Generator().manual_seed(seed), labels=labels,
                      settings=chosen)


def test_a_ddim_step_follows_the_noise_back_to_the_image():
    """Given the very noise that made x_t, DDIM (eta = 0) lands on the same image's x_s, and at
    s = 0 on the image itself."""
    abar = cosine_schedule(50)
    x0 = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 2 - 1
    eps = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    x_t = abar[40].sqrt() * x0 + (1 - abar[40]).sqrt() * eps
    torch.testing.assert_close(ddim_step(abar, x_t, eps, 40, 0), x0)
    torch.testing.assert_close(ddim_step(abar, x_t, eps, 40, 25),
                               abar[25].sqrt() * x0 + (1 - abar[25]).sqrt() * eps)


def test_images_draw_only_their_initial_noise_and_take_steps_denoiser_passes():
    """DDIM with eta = 0: the generator gives the initial noise and nothing else, so that noise
    decides the images; `steps` sets the denoiser's passes, guidance keeps one per step."""
    fam = _image_family()
    passes = []
    fam.averaged.register_forward_hook(lambda module, args, out: passes.append(len(out)))
    generator = torch.Generator().manual_seed(5)
    labels = torch.tensor([0, 1, 2])
    fam.sample(3, generator=generator, labels=labels, settings=Diffusion.Settings(steps=4))
    after_initial_noise = torch.Generator().manual_seed(5)
    torch.randn(3, 3, 10, 13, generator=after_initial_noise)
    assert torch.equal(generator.get_state(), after_initial_noise.get_state())
    assert passes == [3] * 4
    passes.clear()
    _draw(fam, 3, labels=labels, guidance=2.0)
    assert passes == [6] * 10  # every one of T = 10 steps, labelled and unlabelled together


def test_on_a_cpu_images_are_drawn_in_passes_of_a_few_rows_with_the_same_result(monkeypatch):
    """A block larger than CPU_ROWS goes through the denoiser a few rows a pass (guided: half
    as many, each pass holding both copies), and the images are those of one pass over all, up
    to rounding."""
    fam = _image_family()
    fam.train_step(Batch(_pixels(12, 3, 10, 13), torch.arange(12) % 3))
    labels = torch.arange(7) % 3
    whole = {w: _draw(fam, 7, labels=labels, guidance=w, steps=3) for w in (0.0, 2.0)}
    monkeypatch.setattr(images, "CPU_ROWS", 4)
    passes = []
    fam.averaged.register_forward_hook(lambda module, args, out: passes.append(len(out)))
    for w in (0.0, 2.0):
        torch.testing.assert_close(_draw(fam, 7, labels=labels, guidance=w, steps=3), whole[w],
                                   atol=1e-4, rtol=1e-3)  # rounding: sums in another order
    assert passes == [4, 3] * 3 + [4, 4, 4, 2] * 3


def test_guidance_changes_the_images_and_stays_deterministic():
    fam = _image_family()
    fam.train_step(Batch(_pixels(12, 3, 10, 13), torch.arange(12) % 3))
    labels = torch.tensor([0, 1, 2, 0])
    plain, guided = (_draw(fam, labels=labels, guidance=w) for w in (0.0, 3.0))
    assert not torch.equal(plain, guided)
    assert torch.equal(guided, _draw(fam, labels=labels, guidance=3.0))
    assert 0 <= guided.min() and guided.max() <= 1


def _halves(n=256):
    """Class 0 bright in the top half, class 1 in the bottom half, of 8x8 gray images."""
    y = torch.arange(n) % 2
    x = torch.full((n, 1, 8, 8), 0.1)
    x[y == 0, :, :4] = 0.9
    x[y == 1, :, 4:] = 0.9
    return x, y


def test_images_follow_their_labels_more_so_guided_and_unlabelled_draws_mix_them():
    """Measured over 5 seeds: 0.875-1.0 of the draws on their label's side without guidance,
    all of them with guidance 2; unlabelled draws 0.33-0.48 on top."""
    torch.manual_seed(0)
    info = DataInfo("image", {"channels": 1, "height": 8, "width": 8}, ["top", "bottom"])
    chosen = options.parse(Diffusion.Options, ["channels=8", "timesteps=20", "lr=3e-3"],
                           "diffusion")
    fam = Diffusion(chosen, info, torch.device("cpu"))
    x, y = _halves()
    for step in range(150):
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))[:32]
        fam.train_step(Batch(x[rows], y[rows]))
    labels = torch.arange(40) % 2

    def on_top(images):  # (40,): brighter in the top half
        return images[:, 0, :4].mean((1, 2)) > images[:, 0, 4:].mean((1, 2))

    plain, guided = ((on_top(_draw(fam, 40, labels=labels, steps=5, guidance=w))
                      == (labels == 0)).float().mean() for w in (0.0, 2.0))
    assert plain > 0.8 and guided > 0.95, (plain, guided)
    share = on_top(_draw(fam, 40, steps=5)).float().mean()  # no labels: unconditional
    assert 0.2 < share < 0.8, share


def test_the_noise_of_a_step_is_drawn_per_row():
    """The step, eps and the dropped labels all come from Batch.rand / Batch.randn: two
    processes' halves of a batch see the rows' own noise, so their mean loss is the whole
    batch's (what makes --nproc train what one process trains)."""
    fam = _image_family(["channels=8", "timesteps=10", "cond_drop=0.5"])
    x, y = _pixels(8, 3, 10, 13), torch.arange(8) % 3

    def loss(rows, start):
        torch.manual_seed(3)
        batch = Batch(x[rows], y[rows], start=start, total=8)
        return fam.data.loss(fam.net, fam.abar, batch.x, batch.y, batch)

    whole = loss(slice(0, 8), 0)
    torch.testing.assert_close((loss(slice(0, 4), 0) + loss(slice(4, 8), 4)) / 2, whole)


def test_images_train_most_on_the_steps_that_draw_shapes(monkeypatch):
    """Min-SNR-5 weighting, drawn rather than weighed: step t comes up in proportion to
    min(SNR_t, 5) / SNR_t, the nearly clean steps rarely. snr_gamma=0 draws every step alike,
    and so does a run from before the option (its run.json lacks it)."""
    abar = cosine_schedule(100)
    odds = min_snr_odds(abar, 5.0)
    snr = abar[1:] / (1 - abar[1:])
    assert (odds[snr <= 5] == 1).all() and (odds[snr > 5] < 1).all()
    assert odds[0] < 0.01  # t = 1: SNR about 1,600
    u = torch.rand(400_000, 1, generator=torch.Generator().manual_seed(0))
    for weights in (odds, None):
        share = torch.bincount(steps_of(u, 100, weights), minlength=101)[1:] / len(u)
        want = odds / odds.sum() if weights is not None else torch.full((100,), 0.01)
        np.testing.assert_allclose(share.numpy(), want.numpy(), atol=1.5e-3)
    drawn_with = []
    monkeypatch.setattr(images, "steps_of", lambda u, steps, odds=None: (
        drawn_with.append(odds), steps_of(u, steps, odds))[1])
    for opts in (["channels=8", "timesteps=10"], ["channels=8", "timesteps=10",
                                                   "snr_gamma=0"]):
        fam = _image_family(opts)
        fam.train_step(Batch(_pixels(4, 3, 10, 13), torch.arange(4) % 3))
    torch.testing.assert_close(drawn_with[0], min_snr_odds(fam.abar, 5.0))
    assert drawn_with[1] is None
    assert options.recorded(Diffusion.Options, {})["snr_gamma"] == 0


def test_image_settings_and_options_that_do_not_apply_are_refused():
    fam = _image_family()
    with pytest.raises(UsageError, match="guidance"):
        _draw(fam, labels=torch.zeros(4, dtype=torch.long), guidance=-1.0)
    with pytest.raises(UsageError, match="drawn without labels"):
        _draw(fam, guidance=1.0)
    unconditional = _image_family(["channels=8", "timesteps=10", "conditional=false"])
    assert unconditional.num_classes == 0
    with pytest.raises(UsageError, match="drawn without labels"):
        _draw(unconditional, labels=torch.zeros(4, dtype=torch.long), guidance=1.0)
    with pytest.raises(UsageError, match="this run's data is images"):
        _draw(fam, labels=torch.zeros(4, dtype=torch.long), where="a=b")
    with pytest.raises(UsageError, match="this run's data is a table"):
        _draw(TestDiffusionTable().build(), guidance=1.0)
    with pytest.raises(UsageError, match="multiple of 8"):
        options.parse(Diffusion.Options, ["channels=12"], "diffusion")


def test_a_table_run_from_before_the_average_samples_and_resumes(tmp_path):
    """Tables kept no average of the weights before 2026-11-30 (`ema` was for images): their
    files hold none, though run.json records ema 0.999. Such a run samples as it did, from
    its weights, and resumes, its average starting from them."""
    from typer.testing import CliRunner

    from plugkit.cli import app

    runner, run = CliRunner(), tmp_path / "run"
    assert runner.invoke(app, ["train", "diffusion", "--data", "iris", "--epochs", "2", "-o",
                               "ema=0", "-o", "hidden=16", "--out", str(run)]).exit_code == 0
    before = tmp_path / "before.csv"
    assert runner.invoke(app, ["sample", str(run), "--n", "20", "--out",
                               str(before)]).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    record["options"]["ema"] = 0.999  # as an older version recorded it
    del record["options"]["calibrate"]  # which it did not know
    (run / "run.json").write_text(json.dumps(record))
    after = tmp_path / "after.csv"
    result = runner.invoke(app, ["sample", str(run), "--n", "20", "--out", str(after)])
    assert result.exit_code == 0, result.output
    assert after.read_text() == before.read_text()
    resumed = runner.invoke(app, ["train", "--out", str(run), "--resume", "--epochs", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "denoiser_ema.out.weight" in load_file(str(run / "model.safetensors"))


def test_a_sequence_run_from_before_level_samples_as_it_did(tmp_path):
    """Sequence runs diffuse each window as its level and shape since 2026-11-30 (`level`);
    a run.json without the option is an older run, which diffused the windows as they are."""
    from typer.testing import CliRunner

    from plugkit.cli import app

    np.save(tmp_path / "waves.npy", _waves(64))
    runner = CliRunner()
    for level in ("true", "false"):
        run = tmp_path / level
        result = runner.invoke(app, ["train", "diffusion", "--data", str(tmp_path / "waves.npy"),
                                     "--modality", "sequence", "--epochs", "1", "-o",
                                     "hidden=16", "-o", f"level={level}", "--out", str(run)])
        assert result.exit_code == 0, result.output
        channels = load_file(str(run / "model.safetensors"))["denoiser.project.weight"].shape[1]
        assert channels == (4 if level == "true" else 2)  # two features, each with its level
        assert json.loads((run / "run.json").read_text())["options"]["timesteps"] == 1000
    run = tmp_path / "false"

    def drawn():
        result = runner.invoke(app, ["sample", str(run), "--n", "5", "--out",
                                     str(tmp_path / "s.npy")])
        assert result.exit_code == 0, result.output
        return np.load(tmp_path / "s.npy")

    before = drawn()
    record = json.loads((run / "run.json").read_text())
    del record["options"]["level"]  # as an older version recorded it
    (run / "run.json").write_text(json.dumps(record))
    np.testing.assert_array_equal(drawn(), before)


def test_a_table_run_takes_the_familys_batch_size_unless_given(tmp_path):
    from typer.testing import CliRunner

    from plugkit.cli import app

    runner = CliRunner()

    def batch_size(name, *args):
        result = runner.invoke(app, ["train", "diffusion", "--epochs", "1", "-o", "hidden=16",
                                     "--out", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name / "run.json").read_text())["batch_size"]

    rng = np.random.default_rng(0)
    for rows in (256 * 32, 100 * 32):
        pd.DataFrame({"x": rng.normal(size=rows).round(3), "c": rng.choice(["a", "b"], rows)}
                     ).to_csv(tmp_path / f"t{rows}.csv", index=False)
    assert batch_size("big", "--data", str(tmp_path / "t8192.csv")) == 256 == \
        Diffusion.batch_sizes["table"]
    assert batch_size("small", "--data", str(tmp_path / "t3200.csv")) == 100  # 32 steps
    assert batch_size("iris", "--data", "iris") == 64  # never below the core's
    assert batch_size("given", "--data", "iris", "--batch-size", "32") == 32
    np.save(tmp_path / "waves.npy", rng.normal(size=(300, 16, 1)).astype(np.float32))
    assert batch_size("sequence", "--data", str(tmp_path / "waves.npy"), "--modality",
                      "sequence") == 64  # none declared: the core's
    resumed = runner.invoke(app, ["train", "--out", str(tmp_path / "given"), "--resume",
                                  "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "given" / "run.json").read_text())["batch_size"] == 32
