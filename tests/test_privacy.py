"""Differentially private training (plugkit.privacy, plugkit.formats.tabular_private): the
accountant against an independent one, clipping, the private encoding, refusals, resume."""

import json
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.data import load
from plugkit.families.vae import VAE, Options
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec, tabular, tabular_private

opacus = pytest.importorskip("opacus", reason="plugkit[privacy] not installed")
import plugkit  # noqa: E402
from plugkit import privacy  # noqa: E402

runner = CliRunner()


def private_vae(clip: float = 1.0, records: int = 1000, batch: int = 32, epochs: int = 3):
    ds = load("iris")
    family = VAE(Options(hidden=16), DataInfo("table", ds.meta, None, private=True),
                 torch.device("cpu"))
    plan = privacy.plan(privacy.Budget(2.0, 1e-5, clip), 5, 1, records, batch, epochs)
    dp = privacy.DPSGD(family, plan, batch)
    return family, dp, torch.as_tensor(codec.encode(ds)[0][:batch])


def test_the_accountant_agrees_with_dp_accounting():
    # the histograms (one Gaussian mechanism) and the planned steps of DP-SGD, composed by
    # Google's dp-accounting from the plan's own figures
    dp_accounting = pytest.importorskip("dp_accounting")
    _, dp, _ = private_vae(records=1000, batch=32, epochs=3)
    plan = dp.plan
    for _ in range(plan.steps):
        dp.stepped()
    event = dp_accounting.ComposedDpEvent([
        dp_accounting.GaussianDpEvent(plan.histogram_noise / math.sqrt(plan.histograms)),
        dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            plan.sample_rate, dp_accounting.GaussianDpEvent(plan.noise)), plan.steps)])
    independent = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(plan.rdp_delta)
    spent = dp.spent()
    assert spent["epsilon"] == pytest.approx(independent, rel=0.02)
    assert 1.95 < spent["epsilon"] <= 2.0  # planned to spend it all, and no more
    assert spent["delta"] == 1e-5 and plan.rdp_delta == pytest.approx(0.9e-5)  # the threshold
    assert spent["steps"] == plan.steps


def test_the_plan_spends_a_share_on_the_histograms_and_names_categories_rarely():
    budget = privacy.Budget(1.0, 1e-6)
    plan = privacy.plan(budget, 15, 9, 30_000, 512, 20)
    alone = privacy.plan(budget, 0, 0, 30_000, 512, 20)  # nothing to release first
    assert alone.histogram_noise == 0 and alone.threshold == math.inf
    assert alone.noise < plan.noise  # DP-SGD has the whole budget
    # a category held by one record is named with probability THRESHOLD_SHARE * delta / 9
    tail = 1 - NormalDist(1, plan.histogram_noise).cdf(plan.threshold)
    assert tail == pytest.approx(privacy.THRESHOLD_SHARE * 1e-6 / 9, rel=1e-3)


def test_each_record_gradient_is_clipped_and_the_sum_averaged():
    family, dp, x = private_vae(clip=0.05)
    for optimizer in dp.optimizers.values():
        optimizer.noise_multiplier = 0.0  # the clipping alone
    torch.manual_seed(0)
    family.train_step(Batch(x))
    params = [p for p in family.net.parameters()]
    per_row = torch.cat([p.grad_sample.flatten(1) for p in params], 1)  # (B, all)
    norms = per_row.norm(dim=1)
    assert (norms > 0.05).all()  # every record's gradient is larger than the clip here
    factor = (0.05 / (norms + 1e-6)).clamp(max=1.0)
    expected = (per_row * factor[:, None]).sum(0) / len(x)  # the clipped sum, averaged
    applied = torch.cat([p.grad.flatten() for p in params])
    assert torch.allclose(applied, expected, atol=1e-7)
    assert ((per_row * factor[:, None]).norm(dim=1) <= 0.05 + 1e-6).all()


def test_the_vae_floors_the_offsets_scale_under_dp_only(tmp_path):
    # private runs take sigma_floor 1 (Family.private_options), recorded; others keep 0.01
    assert privacy.with_defaults(VAE, ["hidden=8"]) == ["sigma_floor=1.0", "beta=1.0",
                                                        "hidden=8"]
    assert privacy.with_defaults(VAE, ["sigma_floor=0.2"]) == ["beta=1.0", "sigma_floor=0.2"]
    ds = load("iris")
    family = VAE(Options(hidden=16), DataInfo("table", ds.meta, None), torch.device("cpu"))
    assert family.net["likelihood"].floor == 0.01
    family.net["likelihood"].log_sigma.data.fill_(math.log(1e-3))
    assert torch.all(family.net["likelihood"].sigma() == 0.01)
    result = train(tmp_path, "vae", "--data", "iris", "--epochs", "1", "--dp-epsilon", "2",
                   "-o", "hidden=8")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["options"]["sigma_floor"] == 1.0
    plain = train(tmp_path, "vae", "--data", "iris", "--epochs", "1", "-o", "hidden=8",
                  out="plain")
    assert plain.exit_code == 0, plain.output
    options = json.loads((tmp_path / "plain" / "run.json").read_text())["options"]
    assert options["sigma_floor"] == 0.01


def test_an_empty_poisson_batch_still_releases_the_noise():
    family, dp, _ = private_vae()
    before = [p.detach().clone() for p in family.net.parameters()]
    dp.empty_step()
    assert dp.spent()["steps"] == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, family.net.parameters(),
                                                      strict=True))


def test_poisson_rows_are_independent_draws_at_the_rate():
    rows = privacy.poisson_rows(100_000, 0.01, seed=5)
    assert abs(len(rows) - 1000) < 5 * math.sqrt(1000)
    assert torch.equal(rows, privacy.poisson_rows(100_000, 0.01, seed=5))


def test_a_layer_that_mixes_samples_is_refused():
    class WithBatchNorm:
        name = "bn"

        def __init__(self):
            self.net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
            self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)

        def modules(self):
            return {"net": self.net}

        def optimizers(self):
            return {"sgd": self.opt}

        def private_parts(self):
            return self.modules(), self.optimizers()

    with pytest.raises(privacy.UsageError, match="BatchNorm"):
        plan = privacy.plan(privacy.Budget(1.0, 1e-5), 0, 0, 100, 10, 1)
        privacy.DPSGD(WithBatchNorm(), plan, 10)


# --- the private encoding -----------------------------------------------------------------

def table(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    gain = np.where(rng.random(n) < 0.9, 0, rng.integers(1_000, 2_000, n))
    colour = rng.choice(["red", "green", "blue"], n, p=[0.6, 0.3, 0.1]).astype(object)
    colour[7] = "one-of-a-kind"  # held by one record: never listed
    return pd.DataFrame({"age": rng.normal(40, 10, n).round().astype(int), "gain": gain,
                         "colour": colour})


def test_the_private_encoding_lists_common_categories_only_and_keeps_the_shape():
    df = table()
    kinds = {"age": "numeric", "gain": "numeric", "colour": "categorical"}
    encoding = tabular_private.fit(df, kinds, 5.0, 30.0, np.random.default_rng(0))
    age, gain, colour = encoding
    assert colour["categories"] == ["blue", "green", "red", tabular.MISSING]
    assert abs(colour["counts"][2] - (df["colour"] == "red").sum()) < 25  # noise of std 5
    # 90% zeros: a point mode at 0, as heavy as the quantiles QUANTILES resolve (0.85)
    assert {"weight": pytest.approx(0.9, abs=0.06), "mean": 0.0, "std": 0.0} in gain["modes"]
    # N(40, 10): 0.2% and 99.8% quantiles 11 and 69, within bins 26% wide up there
    assert 8 < age["min"] < 25 and 55 < age["max"] < 85 and age["decimals"] == 0
    rows = tabular.encode(df, encoding)  # the unlisted category reads as missing
    back = tabular.decode(rows, encoding)
    assert pd.isna(back["colour"][7]) and (back["colour"][:7] == df["colour"][:7]).all()


def test_a_category_of_one_record_is_named_as_rarely_as_the_plan_says():
    plan = privacy.plan(privacy.Budget(8.0, 1e-3), 1, 1, 1000, 100, 1)  # a loose budget
    df = pd.DataFrame({"c": ["a"] * 50 + ["rare"]})
    named = sum("rare" in tabular_private.fit(df, {"c": "categorical"}, plan.histogram_noise,
                                              plan.threshold, np.random.default_rng(seed)
                                              )[0]["categories"] for seed in range(2000))
    assert named <= 3  # expected 2000 * 1e-4 = 0.2


# --- the CLI ------------------------------------------------------------------------------

def train(tmp_path, *args, out="run"):
    return runner.invoke(app, ["train", "--out", str(tmp_path / out), *args])


def test_a_private_run_reports_its_guarantee_and_its_samples_carry_it(tmp_path):
    result = train(tmp_path, "vae", "--data", "iris", "--epochs", "2", "--dp-epsilon", "1",
                   "-o", "hidden=16")
    assert result.exit_code == 0, result.output
    assert "privacy: (" in result.output and "-DP spent (of epsilon 1)" in result.output
    spent = json.loads((tmp_path / "run" / "run.json").read_text())["privacy"]
    assert 0.95 < spent["epsilon"] <= 1.0 and spent["delta"] == 1e-5 and spent["steps"] == 6
    assert not (tmp_path / "run" / "best.safetensors").exists()  # no choice on val data
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "10", "--out",
                                  str(tmp_path / "s.csv")])
    assert sampled.exit_code == 0, sampled.output
    assert json.loads((tmp_path / "s.csv.json").read_text())["privacy"] == spent


def test_a_run_says_which_columns_the_budget_could_not_release(tmp_path):
    # 40 records at epsilon 1: the noise on each count (std ~ tens) hides every category and
    # value, so the samples are all missing; the user is told which columns, and why
    rng = np.random.default_rng(0)
    pd.DataFrame({"age": rng.integers(20, 70, 40), "job": rng.choice(["a", "b"], 40)}
                 ).to_csv(tmp_path / "people.csv", index=False)
    result = train(tmp_path, "vae", "--data", str(tmp_path / "people.csv"), "--epochs", "1",
                   "--dp-epsilon", "1", "-o", "hidden=8")
    assert result.exit_code == 0, result.output
    assert "the noise hid every value of age, job:" in result.output
    loose = train(tmp_path, "vae", "--data", "iris", "--epochs", "1", "--dp-epsilon", "50",
                  "-o", "hidden=8", out="loose")
    assert loose.exit_code == 0 and "the noise hid" not in loose.output


def test_diffusion_trains_tables_privately(tmp_path):
    result = train(tmp_path, "diffusion", "--data", "iris", "--epochs", "2", "--dp-epsilon",
                   "2", "-o", "hidden=16", "-o", "timesteps=10")
    assert result.exit_code == 0, result.output
    spent = json.loads((tmp_path / "run" / "run.json").read_text())["privacy"]
    assert 1.9 < spent["epsilon"] <= 2.0
    # loaded as it trained, without the calibration a private run does not fit
    assert len(plugkit.load(tmp_path / "run").sample(5)) == 5


@pytest.mark.parametrize("data", ["iris", "digits"])
def test_the_gan_trains_its_discriminator_privately(tmp_path, data):
    result = train(tmp_path, "gan", "--data", data, "--epochs", "2", "--dp-epsilon", "2",
                   "-o", "hidden=16")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert 1.9 < record["privacy"]["epsilon"] <= 2.0
    assert record["options"]["pac"] == 1  # the private default, recorded
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "4", "--out",
                                  str(tmp_path / ("s.csv" if data == "iris" else "s.npz"))])
    assert sampled.exit_code == 0, sampled.output


def test_text_trains_privately_on_a_vocabulary_from_noisy_counts(tmp_path):
    # 600 lines over "abc", and one line of a book that runs past --max-length, holding the
    # only "z": a line is one record and one row (cut short, not split into windows), and a
    # character one line holds is never named
    lines = ["abc", "cab", "bca", "aab", "ccba", "ba"] * 100 + ["abz" * 40]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    result = train(tmp_path, "lstm", "--data", str(tmp_path / "lines.txt"), "--epochs", "2",
                   "--dp-epsilon", "4", "--max-length", "50", "-o", "hidden=16")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["meta"] == {"vocab": ["a", "b", "c"], "max_length": 50}
    assert record["data"]["size"] == 601 and 3.9 < record["privacy"]["epsilon"] <= 4.0
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "5", "--out",
                                  str(tmp_path / "s.txt")])  # on the fused kernel
    assert sampled.exit_code == 0, sampled.output
    assert set((tmp_path / "s.txt").read_text()) <= set("abc\n")


def test_private_images_draw_their_class_mix_from_noisy_counts(tmp_path):
    result = train(tmp_path, "vae", "--data", "digits", "--epochs", "1", "--dp-epsilon", "4",
                   "-o", "hidden=16", "-o", "arch=mlp")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    counts = np.asarray(record["data"]["class_counts"])
    true = np.bincount(load("digits").labels)
    assert not np.array_equal(counts, true) and np.abs(counts - true).max() < 60
    grid = runner.invoke(app, ["sample", str(tmp_path / "run"), "--per-class", "2", "--out",
                               str(tmp_path / "g.png")])
    assert grid.exit_code == 0, grid.output


def test_a_private_run_resumes_exactly_and_keeps_counting(tmp_path):
    common = ["--data", "iris", "--dp-epsilon", "2", "-o", "hidden=16"]
    assert train(tmp_path, "vae", *common, "--epochs", "3", out="whole").exit_code == 0
    assert train(tmp_path, "vae", *common, "--epochs", "1", out="parts").exit_code == 0
    # planned for 1 epoch: more would spend more than was asked for
    longer = train(tmp_path, "--resume", "--epochs", "3", out="parts")
    assert longer.exit_code == 2 and "planned for 1 epochs" in longer.output
    whole = json.loads((tmp_path / "whole" / "run.json").read_text())["privacy"]
    # the same plan in two sessions: a 3-epoch run stopped after one, then resumed
    assert train(tmp_path, "vae", *common, "--epochs", "3", "--max-time", "0",
                 out="cut").exit_code == 0
    resumed = train(tmp_path, "--resume", "--epochs", "3", out="cut")
    assert resumed.exit_code == 0, resumed.output
    cut = json.loads((tmp_path / "cut" / "run.json").read_text())["privacy"]
    assert cut == whole
    same = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("whole", "cut")]
    assert same[0] == same[1]


def test_sequences_train_privately_on_noisy_moments(tmp_path):
    # 400 independent sequences (a record each), two features: one around 300, one always
    # positive; the standardization comes from noisy histograms, without the bounds
    rng = np.random.default_rng(0)
    t = np.arange(12.0)
    x = np.stack([300 + 10 * np.sin(0.5 * t + rng.uniform(0, 6, (400, 1))),
                  np.exp(rng.normal(0, 0.3, (400, 12)))], axis=2).astype(np.float32)
    np.save(tmp_path / "waves.npy", x)
    for family in ("vae", "diffusion"):
        result = train(tmp_path, family, "--data", str(tmp_path / "waves.npy"), "--modality",
                       "sequence", "--epochs", "2", "--dp-epsilon", "4", "-o", "hidden=16",
                       out=family)
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / family / "run.json").read_text())
        meta, plan = record["data"]["meta"], record["privacy"]["plan"]
        assert plan["histograms"] == 4 and 3.9 < record["privacy"]["epsilon"] <= 4.0
        assert "bounds" not in meta and meta["private"]["released"] == [True, True]
        assert "window_spread" not in meta  # read from every window
        true_mean, true_std = x.mean(axis=(0, 1)), x.std(axis=(0, 1))
        # measured through the noise, and near enough to standardize: the thresholds that
        # keep the noise out also cut a skewed feature's thin tail
        assert meta["mean"] != true_mean.tolist()
        assert (np.abs(np.asarray(meta["mean"]) - true_mean) < true_std).all()
        assert (np.abs(np.log(np.asarray(meta["std"]) / true_std)) < np.log(2)).all()
        sampled = runner.invoke(app, ["sample", str(tmp_path / family), "--n", "3", "--out",
                                      str(tmp_path / f"{family}.npy")])
        assert sampled.exit_code == 0, sampled.output


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_the_fused_lstm_gives_each_line_its_own_gradient(dropout):
    """PerSampleLSTMStack's per-sample gradients (what DP-SGD clips) equal each line's own
    gradient, taken by autograd one line at a time, dropout masks and all, in float64."""
    import copy
    import warnings

    import torch.nn.functional as F
    from opacus import GradSampleModule
    from opacus.grad_sample import register_grad_sampler

    from plugkit.families.lstm import CharNet, PerSampleLSTMStack
    from plugkit.families.lstm import Options as LSTMOptions

    register_grad_sampler(PerSampleLSTMStack)(PerSampleLSTMStack.per_sample_grads)
    torch.manual_seed(0)
    net = CharNet(6, LSTMOptions(hidden=8, layers=3, embed=5, dropout=dropout), True).double()
    reference = copy.deepcopy(net)
    tokens = torch.randint(0, 6, (4, 9))

    def per_line_loss(model):
        torch.manual_seed(1)  # the same dropout masks in both
        logits, _ = model(tokens)
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:],
                               reduction="none").mean(1)  # (B,)

    with warnings.catch_warnings():  # Opacus: "secure mode off", and the like
        warnings.simplefilter("ignore")
        private = GradSampleModule(net, loss_reduction="mean")
    per_line_loss(private).mean().backward()
    losses = per_line_loss(reference)
    names = [n for n, _ in reference.lstm.named_parameters()]
    for b in range(len(tokens)):
        own = torch.autograd.grad(losses[b], list(reference.lstm.parameters()),
                                  retain_graph=True)
        for name, g in zip(names, own, strict=True):
            got = getattr(net.lstm, name).grad_sample[b]
            torch.testing.assert_close(got, g, rtol=1e-9, atol=1e-12, msg=name)


def test_a_run_says_which_features_the_budget_could_not_measure(tmp_path):
    # 30 sequences at epsilon 1: the noise (std ~ tens) hides their values
    x = np.random.default_rng(0).normal(5.0, 1.0, (30, 6, 2)).astype(np.float32)
    np.save(tmp_path / "few.npy", x)
    result = train(tmp_path, "vae", "--data", str(tmp_path / "few.npy"), "--modality",
                   "sequence", "--epochs", "1", "--dp-epsilon", "1", "-o", "hidden=8")
    assert result.exit_code == 0, result.output
    assert "the noise hid every value of feature 0, 1:" in result.output


def test_the_sequence_histograms_move_at_most_one_per_record():
    """The sensitivity the plan assumes: one sequence's values of a feature weigh 1 in all."""
    from plugkit.formats import sequence_private

    x = np.full((3, 50, 1), 7.0, dtype=np.float32)  # every value in one cell: the worst case
    seen = []
    noisy = sequence_private._noisy

    def spy(cell, cells, length, sigma, rng):
        seen.append(np.bincount(cell, minlength=cells)[:cells] / length)
        return noisy(cell, cells, length, sigma, rng)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sequence_private, "_noisy", spy)
        meta = sequence_private.moments(x, 0.0, np.random.default_rng(0))
    assert meta["mean"] == [pytest.approx(7.0, rel=0.01)]
    assert len(seen) == sequence_private.HISTOGRAMS_PER_FEATURE
    assert all(h.max() == 3.0 and h.sum() == 3.0 for h in seen)  # 1 a record, not 50


@pytest.mark.parametrize("args, message", [
    (["diffusion", "--data", "digits", "--dp-epsilon", "1"],
     "diffusion trains table and sequence data privately, not image"),
    (["vae", "--data", "sunspots.csv", "--window", "8", "--dp-epsilon", "1"],
     "overlapping windows of one series"),
    (["diffusion", "--data", "co2", "--dp-epsilon", "1"], "overlapping windows of one series"),
    (["gan", "--data", "iris", "--dp-epsilon", "1", "-o", "pac=4"], "needs -o pac=1"),
    (["gan", "--data", "iris", "--dp-epsilon", "1", "-o", "gp=10"], "needs -o gp=0"),
    (["lstm", "--data", "lines.txt", "--dp-epsilon", "1", "-o", "weight_drop=0.5"],
     "needs -o weight_drop=0"),
    (["vae", "--data", "iris", "--dp-epsilon", "0"], "--dp-epsilon must be a positive"),
    (["vae", "--data", "iris", "--dp-epsilon", "1", "--dp-delta", "0.5"], "is not below 1 / n"),
    (["vae", "--data", "iris", "--dp-delta", "1e-6"], "give --dp-epsilon too"),
    (["vae", "--data", "iris", "--dp-epsilon", "1", "--patience", "2"], "--patience"),
])
def test_refusals_are_one_line_and_leave_no_run(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"v": np.sin(np.arange(100.0))}).to_csv("sunspots.csv", index=False)
    (tmp_path / "lines.txt").write_text("ada\nbob\ncyd\n" * 100)
    result = train(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_without_opacus_the_flag_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus raises ImportError
    result = train(tmp_path, "vae", "--data", "iris", "--dp-epsilon", "1")
    assert result.exit_code == 2 and "pip install 'plugkit[privacy]'" in result.output
    assert not (tmp_path / "run").exists()


def test_a_run_without_dp_cannot_resume_privately(tmp_path):
    assert train(tmp_path, "vae", "--data", "iris", "--epochs", "1", "-o",
                 "hidden=16").exit_code == 0
    result = train(tmp_path, "--resume", "--epochs", "2", "--dp-epsilon", "1")
    assert result.exit_code == 2 and "trained without --dp-epsilon" in result.output


def test_the_secure_rng_is_not_replayed_from_the_seed(tmp_path):
    for out in ("a", "b"):
        result = train(tmp_path, "vae", "--data", "iris", "--epochs", "1", "--dp-epsilon", "1",
                       "--dp-secure-rng", "-o", "hidden=16", out=out)
        assert result.exit_code == 0, result.output
    weights = [(tmp_path / out / "model.safetensors").read_bytes() for out in ("a", "b")]
    assert weights[0] != weights[1]  # same --seed, other noise
    spent = json.loads((tmp_path / "a" / "run.json").read_text())["privacy"]
    assert spent["target"]["secure_rng"] is True


def test_a_ledger_records_its_mechanisms_and_refuses_to_overspend():
    budget = privacy.Budget(2.0, 1e-6)
    plan = privacy.plan_own(budget, 3, 1)  # three histograms first, as a table's encoding
    ledger = privacy.Ledger(plan)
    assert ledger.left == pytest.approx(plan.rho) and ledger.spent()["epsilon"] < 1.0
    sigma = 1 / math.sqrt(plan.rho)  # rho / 2 spent by a Gaussian mechanism
    ledger.gaussian(sigma)
    epsilon = math.sqrt(8 * plan.rho / 2)  # and the other half by an exponential mechanism
    ledger.exponential(epsilon)
    assert ledger.left == pytest.approx(0.0, abs=1e-12)
    # the whole budget: the accountant's epsilon is the one asked for (the plan fills it)
    assert ledger.spent()["epsilon"] == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(RuntimeError, match="overspent"):
        ledger.gaussian(100.0)
    # a resumed run's ledger goes on from its history
    assert privacy.Ledger(plan, ledger.history()).left == pytest.approx(0.0, abs=1e-12)


def test_a_thin_tail_keeps_its_range_and_the_noise_adds_no_mass():
    rng = np.random.default_rng(0)
    n = 30_000  # 14% spread thinly over 20,000..80,000: fewer rows a cell than the noise level
    values = np.concatenate([rng.normal(200_000, 50_000, int(n * 0.86)),
                             rng.uniform(20_000, 80_000, int(n * 0.14))]).round()
    df = pd.DataFrame({"w": values})
    sigma = 48.0  # adult's histogram noise at epsilon 1
    column = tabular_private.fit(df, {"w": "numeric"}, sigma, math.inf,
                                 np.random.default_rng(1))[0]
    assert column["min"] < 40_000, column["min"]  # judged cell by cell: 82,000
    cell = np.searchsorted(tabular_private.EDGES, values, side="right")
    counts = np.bincount(cell, minlength=len(tabular_private.EDGES) + 1).astype(float)
    noisy = counts + np.random.default_rng(2).normal(0, sigma, counts.shape)
    kept = tabular_private._occupied(noisy, sigma)
    # the kept groups' sums are unbiased (clipping their negative cells adds nothing); only
    # the thinnest groups are lost
    assert 0.97 * n < kept.sum() < 1.005 * n and (kept >= 0).all()


def test_an_integer_columns_common_values_become_point_modes():
    rng = np.random.default_rng(0)
    hours = np.where(rng.random(20_000) < 0.47, 40, rng.integers(1, 99, 20_000))
    df = pd.DataFrame({"hours": hours.astype(np.int64), "rate": hours + 0.5})
    encoding = tabular_private.fit(df, {"hours": "numeric", "rate": "numeric"}, 20.0, math.inf,
                                   np.random.default_rng(1))
    points = {m["mean"]: m["weight"] for m in encoding[0]["modes"] if m["std"] == 0}
    assert abs(points[40.0] - 0.475) < 0.02  # 47% + its share of the uniform rest
    assert all(float(v).is_integer() for v in points)
    # a float column's cell does not say which value it holds: no point modes from cells
    assert not any(m["std"] == 0 for m in encoding[1]["modes"])


def test_a_private_encoding_bounds_the_offsets_of_values_no_mode_holds():
    """vae on iris at epsilon 1 once diverged at its first step (an infinite KL): the noisy
    histograms of this draw leave some values far from every mode, whose offsets were 5e5."""
    import dataclasses

    ds = load("iris")
    encoding = tabular_private.fit(ds.x, ds.meta["columns"], 24.61008562428689,
                                   117.98217924855528, np.random.default_rng(231))
    x, _ = codec.encode(dataclasses.replace(ds, meta={**ds.meta, "encoding": encoding}))
    assert float(x.abs().max()) == tabular.OFFSET_MAX  # clipped, where it was 524,643


def test_a_private_image_vae_keeps_the_full_kl_weight(tmp_path):
    """Images train with beta 0.3 (VAE.modality_options) because the fitted prior samples
    them; a private run has no fitted prior and keeps beta 1 (VAE.private_options)."""
    private = train(tmp_path, "vae", "--data", "digits", "--epochs", "1", "--dp-epsilon", "8",
                    "-o", "hidden=8")
    assert private.exit_code == 0, private.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["options"]["beta"] == 1.0
    plain = train(tmp_path, "vae", "--data", "digits", "--epochs", "1", "-o", "hidden=8",
                  out="plain")
    assert plain.exit_code == 0, plain.output
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["options"]["beta"] == 0.3
