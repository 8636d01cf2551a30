"""Tables and real-valued sequences end to end: the codec, training through the CLI, sampling
back into the user's own columns, dtypes and units."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import small_table
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.data import dataset
from plugkit.errors import PlugkitError
from plugkit.family import DataInfo
from plugkit.formats import codec, tabular
from plugkit.metrics import sets
from plugkit.runs import Run

runner = CliRunner()


def loaded(df):
    return dataset.validate(dataset.Dataset("t", "table", df))


def test_codec_round_trip_keeps_values_gaps_and_dtypes():
    df = small_table()
    ds = loaded(df)
    x, _ = codec.encode(ds)
    assert x.dtype.is_floating_point and x.shape == (len(df), tabular.width(ds.meta["encoding"]))
    back = codec.decode(DataInfo("table", ds.meta), x)
    assert list(back.columns) == list(df.columns)
    assert back["age"].dtype == df["age"].dtype and back["member"].dtype == bool
    np.testing.assert_allclose(back["income"], df["income"])  # NaN where the data had gaps
    assert (back["city"].isna() == df["city"].isna()).all()
    assert (back["city"].dropna() == df["city"].dropna()).all()
    assert (back["age"] == df["age"]).all() and (back["member"] == df["member"]).all()


def test_an_int_column_with_sampled_gaps_stays_an_int_column():
    # int64 data has no gaps, but a model may sample some where the encoding lets every value
    # be missing (DP): those come back as pandas' nullable Int64, not as floats
    df = pd.DataFrame({"age": np.array([30, 41, 52], np.int64), "small": np.array([1, 2, 3],
                                                                                   np.uint8)})
    encoding = loaded(df).meta["encoding"]
    for column in encoding:
        column["missing"] = True
    rows = tabular.encode(df, encoding)
    rows[1, -2:] = [0.0, 1.0]  # row 1: "small" missing
    back = tabular.decode(rows, encoding)
    assert back["age"].dtype == np.int64 and back["small"].dtype == pd.UInt8Dtype()
    assert back["small"].isna().tolist() == [False, True, False] and back["small"][2] == 3


def test_encoding_layout_and_what_decoding_does_with_model_outputs():
    ds = loaded(small_table())
    enc = {c["name"]: c for c in ds.meta["encoding"]}
    assert enc["income"]["missing"] and enc["income"]["decimals"] == 1
    assert enc["city"]["categories"] == ["Oslo", "Paris", "Rome", None]
    kinds = [(s.kind, s.end - s.start) for s in tabular.spans(ds.meta["encoding"])]
    # income offset + its present/missing flag, age, city one-hot (3 + missing), member bool;
    # 40 rows have one mode per numeric column, so no mode spans
    assert kinds == [("offset", 1), ("missing", 2), ("offset", 1), ("categorical", 4),
                     ("categorical", 2)]
    out = np.zeros((1, 10), np.float32)
    out[0, 0], out[0, 3] = 100.0, 0.123  # far outside the data; not a whole number of years
    out[0, [1, 4, 8]] = 1.0  # income present, city Oslo, member False (softmax scores: argmax)
    row = tabular.decode(out, ds.meta["encoding"]).iloc[0]
    assert row["income"] == np.nanmax(small_table()["income"])  # clipped to the data's range
    (mode,) = enc["age"]["modes"]
    assert row["age"] == round(mode["mean"] + 4 * mode["std"] * 0.123)  # whole years
    assert row["city"] == "Oslo" and not row["member"]


def test_unseen_category_encodes_as_all_zeros():
    ds = loaded(small_table())
    other = small_table().assign(city="Lima")
    city = tabular.spans(ds.meta["encoding"])[3]
    assert not tabular.encode(other, ds.meta["encoding"])[:, city.start:city.end].any()


def test_identifier_columns_are_found():
    """Every value once, in 20 rows or more: an identifier; a repeat, or fewer rows, is not."""
    n = 25
    df = pd.DataFrame({"id": [f"u{i}" for i in range(n)], "city": ["Oslo", "Rome"] * 12 + [None],
                       "email": [f"{i}@x" for i in range(n - 2)] + [None, None],
                       "twice": [f"v{i}" for i in range(n - 1)] + ["v0"]})
    assert tabular.identifiers(tabular.fit(df, {c: "categorical" for c in df})) == [
        ("id", 25), ("email", 23)]
    few = df.head(19)
    assert tabular.identifiers(tabular.fit(few, {c: "categorical" for c in few})) == []


def test_training_on_a_table_with_an_identifier_says_so(tmp_path):
    import warnings

    import plugkit

    df = pd.concat([small_table()] * 5, ignore_index=True)
    df.insert(0, "id", [f"u{i:03d}" for i in range(len(df))])
    df.to_csv(tmp_path / "people.csv", index=False)
    result = runner.invoke(app, ["train", "vae", "--data", str(tmp_path / "people.csv"),
                                 "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert f"note: column 'id' has a different value in each of its {len(df)} rows" in \
        result.output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugkit.train("vae", data=df.drop(columns="id"), epochs=1, out=tmp_path / "no-id",
                      progress=False)
        plugkit.train("vae", data=df, epochs=1, out=tmp_path / "py", progress=False)
    notes = [str(w.message) for w in caught if str(w.message).startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: column 'id' has")  # not without it


def schooling(n=100):
    """A table where `years` and `level` follow from `education` (as adult's education_num
    does from its education), `score` does not, and `site` is constant."""
    rng = np.random.default_rng(0)
    education = rng.choice(["HS", "BA", "MA", "PhD"], n).astype(object)
    education[::10] = None
    years = {"HS": 12, "BA": 16, "MA": 18, "PhD": 21, None: -1}
    level = {"HS": "school", "BA": "college", "MA": "college", "PhD": "doctorate", None: None}
    return pd.DataFrame({"education": education, "years": [years[e] for e in education],
                         "level": [level[e] for e in education],
                         "score": rng.normal(0, 1, n).round(2), "site": "A"})


def tuples(df, columns):
    """The distinct rows of `df[columns]`, missing values as "-"."""
    return set(map(tuple, df[columns].astype(object).fillna("-").to_numpy().tolist()))


def derived(df):
    return [(d["name"], d["of"]) for d in loaded(df).meta["derived"]]


def test_a_column_that_follows_from_a_category_is_written_from_it():
    df = schooling()
    ds = loaded(df)
    assert derived(df) == [("years", "education"), ("level", "education")]
    assert [c["name"] for c in ds.meta["encoding"]] == ["education", "score", "site"]
    # any model output: every decoded row pairs its education with its own years and level
    rows = np.random.default_rng(1).normal(size=(500, tabular.width(ds.meta["encoding"])))
    back = codec.decode(DataInfo("table", ds.meta), rows.astype(np.float32))
    assert list(back.columns) == list(df.columns) and back["years"].dtype == np.int64
    together = ["education", "years", "level"]
    assert tuples(back, together) == tuples(df, together)  # all five, missing included
    json.dumps(ds.meta["derived"])  # stored in the run as plain JSON


def test_a_column_is_derived_only_where_its_categories_have_rows_to_show_it():
    df = schooling()
    # fewer than 20 rows a category: a function by chance as often as not
    assert derived(df.head(79)) == []
    # one row that breaks the pattern keeps the column modelled
    assert derived(df.assign(years=df["years"].where(df.index != 5, 99))) == [
        ("level", "education")]
    # two columns that fix each other: the earlier one is modelled, the later one derived
    swapped = df[["level", "education", "score"]].assign(level=df["education"].str.lower())
    assert derived(swapped) == [("education", "level")]
    # pandas' own missing values (string and nullable int columns) as well as None and NaN
    typed = df.astype({"education": "string", "years": "Int64"})
    typed.loc[typed["education"].isna(), "years"] = pd.NA
    assert derived(typed) == [("years", "education"), ("level", "education")]
    json.dumps(loaded(typed).meta["derived"])


def test_training_on_a_table_with_a_derived_column_says_so_and_samples_keep_it(tmp_path):
    import warnings

    import plugkit

    df = schooling(200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = plugkit.train("gan", data=df, epochs=1, out=tmp_path / "run", progress=False)
    notes = [str(w.message) for w in caught if str(w.message).startswith("note:")]
    assert "note: column 'years' has one value for each 'education' in every training row; " \
        "samples take it from their 'education'" in notes
    samples = run.sample(300, seed=0)
    assert tuples(samples, ["education", "years"]) <= tuples(df, ["education", "years"])
    # rows of a derived column's value: drawn as rows of the one category that gives it
    assert set(run.sample(20, where="level=doctorate")["education"]) == {"PhD"}
    with pytest.raises(PlugkitError, match="'level' follows from 'education', and rows with "
                       "level=college have education (BA or MA|MA or BA): choose education="):
        run.sample(5, where="level=college")


def test_a_private_run_derives_no_column(tmp_path):
    """Which columns follow from which is read from the data itself: under DP every column is
    modelled from the noisy histograms instead."""
    schooling(200).to_csv(tmp_path / "s.csv", index=False)
    result = runner.invoke(app, ["train", "vae", "--data", str(tmp_path / "s.csv"), "--out",
                                 str(tmp_path / "run"), "--epochs", "1", "--dp-epsilon", "8"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "run" / "run.json").read_text())["data"]["meta"]
    assert meta["derived"] == [] and "years" in [c["name"] for c in meta["encoding"]]


def cli(*args):
    result = runner.invoke(app, [*args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_table_family_trains_on_a_csv_and_samples_its_columns(tmp_path, family):
    df = pd.concat([small_table()] * 5, ignore_index=True)
    df.to_csv(tmp_path / "people.csv", index=False)
    rows = cli("train", family, "--data", str(tmp_path / "people.csv"), "--out",
               str(tmp_path / "run"), "--epochs", "8", "--batch-size", "32", "--json",
               "-o", "hidden=32")
    if family == "vae":
        assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    cli("sample", str(tmp_path / "run"), "--n", "50", "--out", str(tmp_path / "s.csv"))
    synthetic = pd.read_csv(tmp_path / "s.csv")
    assert list(synthetic.columns) == list(df.columns) and len(synthetic) == 50
    assert synthetic["age"].dtype == np.int64 and synthetic["member"].dtype == bool
    assert synthetic["age"].between(df["age"].min(), df["age"].max()).all()
    assert set(synthetic["city"].dropna()) <= {"Oslo", "Paris", "Rome"}
    assert json.loads((tmp_path / "s.csv.json").read_text())["n"] == 50


def test_samples_of_a_semicolon_csv_are_written_in_its_style(tmp_path):
    """A spreadsheet that wrote `;` and 1,5 reads the samples back the same way."""
    df = pd.concat([small_table()] * 5, ignore_index=True)
    df.to_csv(tmp_path / "people.csv", index=False, sep=";", decimal=",")
    assert "," in (tmp_path / "people.csv").read_text()  # decimal commas in the file
    cli("train", "vae", "--data", str(tmp_path / "people.csv"), "--out", str(tmp_path / "run"),
        "--epochs", "1", "-o", "hidden=32", "--json")
    cli("sample", str(tmp_path / "run"), "--n", "50", "--out", str(tmp_path / "s.csv"))
    synthetic = pd.read_csv(tmp_path / "s.csv", sep=";", decimal=",")
    assert list(synthetic.columns) == list(df.columns)
    assert synthetic["income"].dtype == np.float64 and synthetic["age"].dtype == np.int64


def test_vae_learns_a_builtin_table(tmp_path):
    rows = cli("train", "vae", "--data", "iris", "--out", str(tmp_path / "run"), "--epochs", "6",
               "--json", "-o", "hidden=32")
    assert rows[-1]["loss"] < rows[0]["loss"]
    cli("sample", str(tmp_path / "run"), "--n", "20", "--out", str(tmp_path / "s.csv"))
    assert set(pd.read_csv(tmp_path / "s.csv")["class"]) <= {"setosa", "versicolor", "virginica"}


def test_lstm_trains_on_sequences_and_samples_in_data_units(tmp_path):
    t = np.arange(64.0)
    phase = np.random.default_rng(0).uniform(0, 6, (200, 1))
    series = 100.0 + 20.0 * np.sin(0.5 * t + phase)  # (200, 64): units far from standardized
    np.save(tmp_path / "waves.npy", series[:, :, None].astype(np.float32))
    rows = cli("train", "lstm", "--data", str(tmp_path / "waves.npy"), "--modality", "sequence",
               "--out", str(tmp_path / "run"), "--epochs", "6", "--json", "-o", "hidden=32",
               "-o", "layers=1", "-o", "lr=0.01")
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.3  # nats per value
    cli("sample", str(tmp_path / "run"), "--n", "8", "--out", str(tmp_path / "s.npz"))
    x = np.load(tmp_path / "s.npz", allow_pickle=False)["x"]
    assert x.shape == (8, 64, 1) and 60 < x.mean() < 140  # decoded back to the data's units


def test_sequence_flags_and_formats_are_checked(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((10, 5, 1), np.float32))
    cli("train", "lstm", "--data", str(tmp_path / "s.npy"), "--modality", "sequence", "--out",
        str(tmp_path / "run"), "--epochs", "1", "-o", "hidden=8")
    result = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "2", "--out",
                                 str(tmp_path / "s.png")])
    assert result.exit_code == 2 and ".npz, .npy" in result.output
    result = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "2", "--temperature",
                                 "0.5"])
    assert result.exit_code == 2 and "are for text; this run's data is sequences" in \
        result.output


def test_a_long_series_is_cut_into_windows_for_training_and_eval(tmp_path):
    t = np.arange(600.0)
    pd.DataFrame({"temp": 10 + 5 * np.sin(t / 12), "load": np.cos(t / 30)}).to_csv(
        tmp_path / "series.csv", index=False)
    ds = dataset_windows(tmp_path / "series.csv", 48)
    assert ds.modality == "sequence" and ds.x.shape == (600 - 48 + 1, 48, 2)
    np.testing.assert_allclose(ds.x[5, :, 0], 10 + 5 * np.sin(t[5:53] / 12), rtol=1e-6)
    cli("train", "lstm", "--data", str(tmp_path / "series.csv"), "--window", "48", "--out",
        str(tmp_path / "run"), "--epochs", "1", "-o", "hidden=8", "-o", "layers=1")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["window"] == 48 and record["data"]["modality"] == "sequence"
    cli("sample", str(tmp_path / "run"), "--n", "3", "--out", str(tmp_path / "w.npy"))
    assert np.load(tmp_path / "w.npy").shape == (3, 48, 2)
    # eval knows where each real window starts (its detection folds are spans of time)
    compared = sets.from_run(Run(tmp_path / "run"), None, 0)
    rows = np.arange(compared.real_size)
    np.testing.assert_array_equal(compared.real_x(rows), ds.x[compared.starts_of(rows)])
    assert sorted(compared.starts_of(rows)) == list(range(len(ds)))
    bad = runner.invoke(app, ["train", "lstm", "--data", "names", "--window", "8"])
    assert bad.exit_code == 2 and "one long series" in bad.stderr


def test_windows_know_where_they_start_through_subsets(tmp_path):
    from plugkit.data import split, windows

    pd.DataFrame({"v": np.arange(100.0)}).to_csv(tmp_path / "s.csv", index=False)
    strided = windows.windows(dataset.Dataset("s", "table", pd.read_csv(tmp_path / "s.csv"),
                                              meta={"columns": {"v": "numeric"}}), 10, 3)
    assert list(windows.starts(strided)) == list(range(0, 91, 3))
    train, held = split(strided, 0.25)
    for part in (train, held, train.subset(np.array([1, 4]))):
        np.testing.assert_array_equal(part.x[:, 0, 0], windows.starts(part))  # v[t] = t
    assert windows.starts(dataset.Dataset("n", "sequence", strided.x)) is None  # own records


def dataset_windows(path, length):
    from plugkit.data import load

    return load(str(path), window=length)
