"""The table path as in CTGAN/TVAE: mode-specific normalization in the codec, training-by-
sampling and conditional sampling (plugkit/families/tabular_heads.py), and `plugkit sample
--where`."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import small_table
from scipy import stats
from typer.testing import CliRunner

from plugkit import sampling
from plugkit.cli import app
from plugkit.data import dataset
from plugkit.errors import UsageError
from plugkit.families.tabular_heads import Conditions
from plugkit.formats import tabular

runner = CliRunner()


def multimodal_table(n=3000, seed=0):
    """A bimodal float column with gaps, an int column that is mostly 0 with a far-out mode
    (capital-gain-like), a category with a rare value, a bool."""
    rng = np.random.default_rng(seed)
    far = rng.random(n) < 0.4
    wave = np.where(far, rng.normal(100.0, 5.0, n), rng.normal(0.0, 1.0, n))
    wave[::11] = np.nan
    gain = np.where(rng.random(n) < 0.9, 0, rng.integers(3000, 9000, n))
    kind = rng.choice(["a", "b", "rare"], n, p=[0.7, 0.29, 0.01]).astype(object)
    return pd.DataFrame({"wave": wave, "gain": gain, "kind": kind, "flag": rng.random(n) < 0.5})


def encoding_of(df):
    return dataset.validate(dataset.Dataset("t", "table", df)).meta["encoding"]


def test_multimodal_columns_get_their_modes_and_decode_back_exactly():
    df = multimodal_table()
    encoding = encoding_of(df)
    wave, gain = encoding[0], encoding[1]
    means = sorted(m["mean"] for m in wave["modes"] if m["weight"] > 0.05)
    assert len(means) == 2 and abs(means[0]) < 0.5 and abs(means[1] - 100) < 1.5
    assert {"weight": 0.9, "mean": 0.0, "std": 0.0} == pytest.approx(gain["modes"][0], abs=0.02)
    assert all(m["weight"] >= tabular.MIN_WEIGHT for c in (wave, gain) for m in c["modes"])
    kinds = [(s.column, s.kind) for s in tabular.spans(encoding)]
    assert kinds[:3] == [("wave", "offset"), ("wave", "mode"), ("wave", "missing")]
    x = tabular.encode(df, encoding)
    offsets = x[:, [s.start for s in tabular.spans(encoding) if s.kind == "offset"]]
    assert np.quantile(np.abs(offsets), 0.99) < 1  # bounded: what a tanh head can write
    back = tabular.decode(x, encoding)
    assert list(back.dtypes) == list(df.dtypes)  # float with gaps, int, pandas' str, bool
    np.testing.assert_allclose(back["wave"], df["wave"], rtol=1e-5, atol=1e-5)  # NaN included
    assert (back["gain"] == df["gain"]).all() and (back[["kind", "flag"]] == df[["kind",
                                                                                 "flag"]]).all().all()


def test_the_mixture_fit_is_deterministic_and_plain_json():
    df = multimodal_table()
    first, second = encoding_of(df), encoding_of(df.copy())
    assert json.loads(json.dumps(first)) == first == second


def test_log_frequency_picks_of_training_by_sampling():
    """Conditions pick a categorical column uniformly, then a category with probability
    log(1 + count) / sum over the column's categories, and a row that holds it."""
    df = multimodal_table()
    encoding = encoding_of(df)
    conditions = Conditions(encoding)
    x = torch.from_numpy(tabular.encode(df, encoding))
    torch.manual_seed(0)
    n = 20_000
    cond, rows = conditions.training(x, n)
    assert cond.shape == (n, conditions.width) and (cond.sum(1) == 1).all()
    # every row drawn holds its condition's category
    assert (x[rows][:, conditions.index] * cond).sum(1).eq(1).all()
    observed = cond.sum(0).numpy()
    counts = np.concatenate([c["counts"] for c in encoding if c["kind"] == "categorical"])
    columns = [c for c in encoding if c["kind"] == "categorical"]
    expected = np.concatenate([np.log1p(c["counts"]) / np.log1p(c["counts"]).sum()
                               for c in columns]) / len(columns) * n
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    # the rare category (1% of rows) gets ~19% of its column's picks, not 1%
    rare = [str(v) for v in encoding[2]["categories"]].index("rare")
    assert observed[rare] / (n / 2) > 0.15 and counts[rare] / len(df) < 0.02


def test_sampling_conditions_follow_the_data_frequencies():
    encoding = encoding_of(multimodal_table())
    conditions = Conditions(encoding)
    n = 20_000
    generator = torch.Generator().manual_seed(0)
    columns = [c for c in encoding if c["kind"] == "categorical"]
    expected = np.concatenate([np.asarray(c["counts"]) / sum(c["counts"])
                               for c in columns]) / len(columns) * n
    # the sampler's draws, and a private GAN's fake conditions from uniform draws per row
    for cond in (conditions.sampling(n, generator, torch.device("cpu")),
                 conditions.by_frequency(torch.rand(n, generator=generator))):
        assert cond.shape == (n, conditions.width) and (cond.sum(1) == 1).all()
        assert stats.chisquare(cond.sum(0).numpy(), expected).pvalue > 1e-4


def test_the_penalty_is_the_cross_entropy_of_the_conditioned_column():
    encoding = encoding_of(small_table())
    conditions = Conditions(encoding)
    city = next(s for s in tabular.spans(encoding) if s.column == "city")
    cond = conditions.sampling(3, None, torch.device("cpu"), "city=Rome")
    out = torch.zeros(3, tabular.width(encoding))
    out[:, city.start + 2] = 10.0  # confident and right
    assert conditions.penalty(out, cond).max() < 1e-3
    out[:, city.start + 2] = -10.0  # confident and wrong
    assert conditions.penalty(out, cond).min() > 9


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny trained run of each family on a CSV of small_table() rows."""
    root = tmp_path_factory.mktemp("tables")
    pd.concat([small_table()] * 3, ignore_index=True).to_csv(root / "people.csv", index=False)
    made = {}
    for family in ("vae", "gan"):
        result = runner.invoke(app, ["train", family, "--data", str(root / "people.csv"),
                                     "--out", str(root / family), "--epochs", "2",
                                     "--batch-size", "32", "-o", "hidden=16"])
        assert result.exit_code == 0, result.output
        made[family] = root / family
    return made


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_where_returns_only_the_requested_category(runs, family, tmp_path):
    out = tmp_path / "rome.csv"
    result = runner.invoke(app, ["sample", str(runs[family]), "--n", "200", "--out", str(out),
                                 "--where", "city=Rome"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert len(rows) == 200 and (rows["city"] == "Rome").all()
    assert json.loads(out.with_name("rome.csv.json").read_text())["settings"] == {
        "where": "city=Rome"}
    sampling.sample(runs[family], 50, tmp_path / "no.csv", where="member=True")
    assert pd.read_csv(tmp_path / "no.csv")["member"].all()  # a bool column's value as text


def test_where_given_twice_is_refused_not_cut_to_the_last(runs, tmp_path):
    result = runner.invoke(app, ["sample", str(runs["gan"]), "--n", "5", "--out",
                                 str(tmp_path / "s.csv"), "--where", "city=Rome", "--where",
                                 "member=True"])
    assert result.exit_code == 2 and "--where takes one COLUMN=VALUE" in result.output
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("where,message", [
    ("city", "--where takes COLUMN=VALUE"),
    ("town=Rome", "'town' is not a column of this run; categorical columns: city, member"),
    ("age=30", "'age' is numeric"),
    ("city=Lima", "city has no value 'Lima'; its values: 'Oslo', 'Paris', 'Rome'"),
])
def test_bad_where_is_one_line_and_exit_2(runs, where, message, tmp_path):
    result = runner.invoke(app, ["sample", str(runs["gan"]), "--n", "5", "--out",
                                 str(tmp_path / "s.csv"), "--where", where])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(UsageError):
        sampling.sample(runs["vae"], 5, tmp_path / "s.csv", where=where)


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_a_table_without_categorical_columns_needs_no_conditions(family):
    from plugkit import options, plugins
    from plugkit.family import Batch, DataInfo

    df = multimodal_table(200)[["wave", "gain"]]
    info = DataInfo("table", dataset.validate(dataset.Dataset("t", "table", df)).meta)
    cls = plugins.get(family)
    model = cls(options.parse(cls.Options, ["hidden=16"], family), info, torch.device("cpu"))
    losses = model.train_step(Batch(torch.from_numpy(tabular.encode(df, info.meta["encoding"]))))
    assert all(np.isfinite(v) for v in losses.values())
    rows = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert tabular.decode(rows.numpy(), info.meta["encoding"]).shape == (7, 2)


def test_plain_values_round_trip_through_the_encoding():
    """The documented way for a family to read plain column values and write them back:
    arrays give arrays, tensors tensors on their device."""
    df = multimodal_table()
    encoding = encoding_of(df)
    x = tabular.encode(df, encoding)
    plain = tabular.values(x, encoding)
    assert plain.shape == (len(df), len(encoding)) and plain.dtype == np.float64
    numeric = [k for k, c in enumerate(encoding) if c["kind"] == "numeric"]
    for k in numeric:
        np.testing.assert_allclose(plain[:, k], df.iloc[:, k].to_numpy(float), rtol=1e-5,
                                   atol=1e-5)  # NaN where missing
    back = tabular.decode(tabular.from_values(plain, encoding), encoding)
    pd.testing.assert_frame_equal(back, tabular.decode(x, encoding))
    as_tensor = tabular.values(torch.from_numpy(x), encoding)
    assert isinstance(as_tensor, torch.Tensor) and np.array_equal(
        as_tensor.numpy(), plain, equal_nan=True)
    rows = tabular.from_values(as_tensor, encoding)
    assert rows.dtype == torch.float32 and torch.equal(rows, torch.from_numpy(
        tabular.from_values(plain, encoding)))


def _ages(rows):
    """Encoded rows [offset, mode one-hot] of a whole-number column whose values 30 and 31
    are point modes, beside a Gaussian mode around 30 of std 5 (20 per offset unit)."""
    column = {"name": "age", "kind": "numeric", "dtype": "int64", "min": 18.0, "max": 90.0,
              "decimals": 0, "missing": False,
              "modes": [{"weight": 0.2, "mean": 30.0, "std": 0.0},
                        {"weight": 0.2, "mean": 31.0, "std": 0.0},
                        {"weight": 0.6, "mean": 30.0, "std": 5.0}]}
    return np.array(rows, dtype=np.float32), [column]


def test_a_gaussian_mode_never_rounds_onto_a_point_modes_value():
    """The data's 30s and 31s are the point modes' alone: a Gaussian-mode value that rounds
    onto one moves to the nearer value that is neither (29 or 32), a point mode's stays."""
    rows, encoding = _ages([[0.0, 1, 0, 0], [0.0, 0, 1, 0],  # the point modes: 30, 31
                            [0.01, 0, 0, 1],  # 30.2 -> 29
                            [0.04, 0, 0, 1],  # 30.8 -> 32
                            [0.11, 0, 0, 1],  # 32.2 -> 32, not a point value
                            [-0.5, 0, 0, 1]])  # 20
    assert list(tabular.decode(rows, encoding)["age"]) == [30, 31, 29, 32, 32, 20]
    encoding[0]["min"] = 30.0  # 29 is out of range: up to 32
    assert tabular.decode(rows, encoding)["age"][2] == 32


def _row_head_by_spans(head, out, u):
    """RowHead's function written span by span, column by column, with the uniform draws u
    of its Gumbel noise: the reference its one-call version must equal."""
    import torch.nn.functional as F

    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
    rows = out.clone()
    for s in head.discrete:
        soft = F.softmax((out[:, s.start:s.end] + gumbel[:, s.start:s.end]) / head.tau, 1)
        hard = F.one_hot(soft.argmax(1), s.end - s.start).to(out.dtype)
        rows[:, s.start:s.end] = hard - soft.detach() + soft
    spans = {(s.column, s.kind): s for s in tabular.spans(head.encoding)}
    final = rows.clone()
    for c in (c for c in head.encoding if c["kind"] == "numeric"):
        scaled = torch.tensor([float(m["std"] > 0) for m in c["modes"]], dtype=out.dtype)
        mode, missing = spans.get((c["name"], "mode")), spans.get((c["name"], "missing"))
        keep = rows[:, mode.start:mode.end] @ scaled if mode else scaled.expand(len(rows))
        if missing:
            keep = keep * rows[:, missing.start]
        at = spans[c["name"], "offset"].start
        final[:, at] = torch.tanh(out[:, at]) * keep
    return final


def test_row_head_draws_every_span_in_one_call_as_span_by_span_would():
    from plugkit.families.tabular_heads import RowHead

    encoding = encoding_of(multimodal_table())
    head = RowHead(encoding)
    head.encoding = encoding  # for the reference
    kinds = {s.kind for s in tabular.spans(encoding)}
    assert kinds == {"offset", "mode", "missing", "categorical"}  # every kind of span
    out = torch.randn(256, tabular.width(encoding), dtype=torch.float64, requires_grad=True)
    weight = torch.randn(out.shape, dtype=torch.float64)
    torch.manual_seed(3)
    rows = head(out)
    (grad,) = torch.autograd.grad((rows * weight).sum(), out)
    torch.manual_seed(3)
    u = torch.rand_like(out)
    expected = _row_head_by_spans(head, out, u)
    (expected_grad,) = torch.autograd.grad((expected * weight).sum(), out)
    torch.testing.assert_close(rows, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    for s in head.discrete:  # exactly one-hot, like real rows
        assert torch.equal(rows[:, s.start:s.end].detach().sum(1), torch.ones(256).double())


def test_row_head_picks_each_category_with_its_softmax_probability():
    from plugkit.families.tabular_heads import RowHead

    encoding = encoding_of(multimodal_table())
    head = RowHead(encoding)
    span = next(s for s in tabular.spans(encoding) if s.kind == "categorical")
    logits = torch.tensor([1.0, 0.0, -1.0])[: span.end - span.start]
    out = torch.zeros(40_000, tabular.width(encoding))
    out[:, span.start:span.end] = logits
    torch.manual_seed(0)
    shares = head(out)[:, span.start:span.end].mean(0)
    torch.testing.assert_close(shares, logits.softmax(0), atol=0.01, rtol=0)  # Gumbel-max
