"""The aim family: AIM's noisy marginals fitted by a graphical model (plugkit.marginals)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import table_batch, table_info
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.families.aim import Aim
from plugkit.marginals.attributes import Attributes
from plugkit.testing import FamilyTests

runner = CliRunner()


class TestAimTable(FamilyTests):
    family = Aim
    info = table_info()
    options = ["iters=30", "final_iters=60"]
    loss_key = "error"  # the worst marginal's L1 error, as a share of the rows
    steps = 8

    def batch(self):
        return table_batch(self.info)


def test_levels_round_trip_through_encoded_rows():
    info = table_info()
    attributes = Attributes(info.meta["encoding"], bins=4)
    generator = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(s, (500,), generator=generator)
                         for s in attributes.sizes], 1)
    rows = attributes.rows(codes, generator)
    assert torch.equal(attributes.codes(rows), codes)
    # and the data's own rows keep their levels
    data_codes = attributes.codes(table_batch(info).x)
    assert torch.equal(attributes.codes(attributes.rows(data_codes, generator)), data_codes)


def paired(n=2000, seed=0):
    """b follows a in 90% of rows; x is numeric and follows a too."""
    rng = np.random.default_rng(seed)
    a = rng.choice(["p", "q", "r"], n)
    b = np.where(rng.random(n) < 0.9, a, rng.choice(["p", "q", "r"], n))
    x = np.select([a == "p", a == "q"], [10.0, 50.0], 90.0) + rng.normal(0, 3, n)
    return pd.DataFrame({"a": a, "b": b, "x": x.round(2)})


def train(tmp_path, *args, out="run"):
    return runner.invoke(app, ["train", "aim", "--data", str(tmp_path / "paired.csv"),
                               "--out", str(tmp_path / out), "-o", "final_iters=300", *args])


@pytest.fixture
def data(tmp_path):
    paired().to_csv(tmp_path / "paired.csv", index=False)


@pytest.mark.usefixtures("data")
def test_a_private_run_spends_its_budget_and_learns_the_pairs(tmp_path):
    pytest.importorskip("opacus")
    result = train(tmp_path, "--dp-epsilon", "4")
    assert result.exit_code == 0, result.output
    assert "by aim's own mechanism" in result.output
    assert "epoch 1 of at most 1000 " in result.output  # its rounds end when rho is spent
    spent = json.loads((tmp_path / "run" / "run.json").read_text())["privacy"]
    assert 0.99 * 4 < spent["epsilon"] <= 4 and spent["rho"] <= spent["plan"]["rho"]
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "4000", "--out",
                                  str(tmp_path / "s.csv")])
    assert sampled.exit_code == 0, sampled.output
    assert json.loads((tmp_path / "s.csv.json").read_text())["privacy"] == spent
    rows = pd.read_csv(tmp_path / "s.csv")
    assert (rows["a"] == rows["b"]).mean() > 0.75  # independent columns: about 1/3
    assert rows["x"].notna().all()  # no missing values in the data, none sampled
    means = rows.groupby("a")["x"].mean()
    assert means["p"] < 30 < means["q"] < 70 < means["r"], means


@pytest.mark.usefixtures("data")
def test_a_private_run_resumes_exactly(tmp_path):
    pytest.importorskip("opacus")
    assert train(tmp_path, "--dp-epsilon", "2", out="whole").exit_code == 0
    assert train(tmp_path, "--dp-epsilon", "2", "--epochs", "3", out="cut").exit_code == 0
    resumed = runner.invoke(app, ["train", "--out", str(tmp_path / "cut"), "--resume",
                                  "--epochs", "1000"])
    assert resumed.exit_code == 0, resumed.output
    runs = [json.loads((tmp_path / r / "run.json").read_text()) for r in ("whole", "cut")]
    assert runs[0]["privacy"] == runs[1]["privacy"]
    same = [(tmp_path / r / "model.safetensors").read_bytes() for r in ("whole", "cut")]
    assert same[0] == same[1]


@pytest.mark.usefixtures("data")
def test_without_a_budget_it_fits_the_marginals_exactly(tmp_path):
    result = train(tmp_path)
    assert result.exit_code == 0, result.output
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "4000", "--out",
                                  str(tmp_path / "s.csv")])
    assert sampled.exit_code == 0, sampled.output
    rows, real = pd.read_csv(tmp_path / "s.csv"), paired()
    same = (rows["a"] == rows["b"]).mean()
    assert abs(same - (real["a"] == real["b"]).mean()) < 0.03
    # --where draws from the model's conditional: every row holds the value, and the columns
    # that follow it follow it there too
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "1000", "--where",
                                  "a=q", "--out", str(tmp_path / "q.csv")])
    assert sampled.exit_code == 0, sampled.output
    rows = pd.read_csv(tmp_path / "q.csv")
    assert (rows["a"] == "q").all() and (rows["b"] == "q").mean() > 0.85
    assert 40 < rows["x"].mean() < 60


@pytest.mark.usefixtures("data")
def test_the_secure_rng_reaches_the_encoding_and_every_measurement(tmp_path):
    pytest.importorskip("opacus")
    for out, secure in (("a", True), ("b", True), ("c", False), ("d", False)):
        flags = ["--dp-secure-rng"] if secure else []
        result = train(tmp_path, "--dp-epsilon", "2", "--epochs", "3", *flags, out=out)
        assert result.exit_code == 0, result.output
    runs = {r: json.loads((tmp_path / r / "run.json").read_text()) for r in "abcd"}
    encodings = {r: runs[r]["data"]["meta"]["encoding"] for r in "abcd"}
    weights = {r: (tmp_path / r / "model.safetensors").read_bytes() for r in "abcd"}
    assert encodings["c"] == encodings["d"] and weights["c"] == weights["d"]  # --seed's
    assert encodings["a"] != encodings["b"] and weights["a"] != weights["b"]  # the OS's


@pytest.mark.usefixtures("data")
def test_a_clip_is_refused_where_no_gradient_is_clipped(tmp_path):
    result = train(tmp_path, "--dp-epsilon", "2", "--dp-clip", "0.5")
    assert result.exit_code == 2 and "--dp-clip does not apply" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_whole_batch_family_trains_privately_only_by_its_own_mechanism():
    from plugkit.family import contract_errors

    class Sloppy(Aim):  # the whole data at every step under DP-SGD: its accountant would lie
        private_mechanism = False

    assert any("Poisson" in e for e in contract_errors(Sloppy))
    assert contract_errors(Aim) == []


def test_one_offset_bin_still_spreads_a_gaussian_mode():
    info = table_info()
    attributes = Attributes(info.meta["encoding"], bins=1)
    generator = torch.Generator().manual_seed(0)
    codes = attributes.codes(table_batch(info).x)
    rows = attributes.rows(codes.repeat(20, 1), generator)
    income = next(c for c in attributes.columns if c.kind == "numeric")
    offsets = rows[:, income.offset]
    assert offsets.unique().numel() > 100  # drawn from each mode's Gaussian, not its mean
    assert torch.equal(attributes.codes(rows), codes.repeat(20, 1))


def test_a_column_without_missing_values_samples_none_under_dp():
    import math as m

    from plugkit import data
    from plugkit.family import DataInfo
    from plugkit.formats import tabular_private
    from plugkit.marginals.model import GraphicalModel

    ds = data.load(paired())
    encoding = tabular_private.fit(ds.x, ds.meta["columns"], 5.0, m.inf,
                                   np.random.default_rng(0))
    assert next(c for c in encoding if c["name"] == "x")["private"]["missing_share"] == 0.0
    family = Aim(TestAimTable.family.Options(), DataInfo("table", {**ds.meta,
                                                                    "encoding": encoding},
                                                          private=True), torch.device("cpu"))
    sizes = family.attributes.sizes  # a model that puts mass on every level, missing ones too
    family.fitted.aim.model = GraphicalModel(sizes, {(i,): torch.zeros(s, dtype=torch.float64)
                                                     for i, s in enumerate(sizes)}, 100.0)
    rows = family.sample(3000, generator=torch.Generator().manual_seed(0))
    x = next(c for c in family.attributes.columns if c.kind == "numeric")
    assert (rows[:, x.missing[0] + 1] == 0).all()  # the missing flag never set


def test_python_hears_which_columns_the_noise_hid(tmp_path):
    pytest.importorskip("opacus")
    import plugkit

    df = paired(n=40)
    with pytest.warns(UserWarning, match="the noise hid every value of"):
        plugkit.train("aim", data=df, dp_epsilon=0.5, progress=False, out=tmp_path / "run")


def test_weights_of_other_levels_are_refused_in_one_line(tmp_path):
    from plugkit import checkpoint
    from plugkit.errors import PlugkitError

    trained = TestAimTable().build()
    trained.train_step(table_batch(trained.info))
    checkpoint.save_weights(tmp_path, trained.modules())
    other = TestAimTable().build()
    other.attributes.sizes = tuple(s + 1 for s in other.attributes.sizes)
    other.fitted.aim.sizes = other.attributes.sizes
    with pytest.raises(PlugkitError, match="other levels"):
        checkpoint.load_weights(tmp_path, other.modules())
