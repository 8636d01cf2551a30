"""The README's Python section, as a notebook user runs it (plugkit.train / sample / evaluate /
load), from another folder, on in-memory data: a DataFrame, arrays, strings."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import plugkit
from plugkit.data.dataset import DataError
from plugkit.errors import UsageError
from plugkit.runs import Run

FAST = {"hidden=32", "latent_dim=4"}


def _iris() -> pd.DataFrame:
    df = load_iris(as_frame=True).frame
    df["species"] = load_iris().target_names[df.pop("target")]
    return df


def test_the_readme_python_section_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    df = _iris()
    model = plugkit.train("vae", data=df, epochs=2, options=sorted(FAST))
    assert isinstance(model, Run) and (model.path / "model.safetensors").exists()
    assert "epoch 2" in capsys.readouterr().out  # progress shows in a notebook
    rows = model.sample(40, seed=0)
    assert list(rows.columns) == list(df.columns) and len(rows) == 40
    assert (rows.dtypes == df.dtypes).all()
    assert rows.equals(model.sample(40, seed=0))  # a seed means the same rows
    setosa = model.sample(12, where="species=setosa")
    assert (setosa["species"] == "setosa").all()
    report = model.evaluate(real=df)
    assert report.measures and report.summary["n"] > 0

    digits = plugkit.train("vae", data="digits", epochs=1, out="runs/nb-vae",
                           options=sorted(FAST))
    images, labels = digits.sample(8, seed=0)
    assert images.shape == (8, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert labels.dtype == np.int64 and len(labels) == 8
    grid = plugkit.sample(digits, n=64, out="grid.png")
    assert grid.exists() and grid.with_name("grid.png.json").exists()
    again = plugkit.load("runs/nb-vae")
    assert np.array_equal(again.sample(8, seed=0)[0], images)


def test_in_memory_data_is_fingerprinted_not_copied(tmp_path):
    df = _iris()
    model = plugkit.train("vae", data=df, epochs=1, out=tmp_path / "run", options=sorted(FAST),
                          progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    kept = record["data"]["memory"]
    assert kept["kind"] == "DataFrame" and kept["rows"] == 150 and len(kept["sha256"]) == 64
    assert "path" not in record["data"] and not list((tmp_path / "run").glob("*.csv"))
    with pytest.raises(UsageError, match="trained on in-memory data .*give the same data again"):
        plugkit.load(tmp_path / "run").evaluate()
    changed = df.copy()
    changed.loc[3, "sepal length (cm)"] += 1
    with pytest.raises(DataError, match="trained on other data"):
        model.evaluate(real=changed)
    with pytest.raises(DataError, match="trained on other data"):
        model.resume(changed, epochs=2, progress=False)
    with pytest.raises(DataError, match="trained on other data"):
        plugkit.load(tmp_path / "run", data=changed)  # when loading, not at its first use
    resumed = plugkit.load(tmp_path / "run").resume(df, epochs=2, progress=False)
    assert json.loads((resumed.path / "run.json").read_text())["status"] == "done"
    assert len((resumed.path / "metrics.jsonl").read_text().splitlines()) == 2


def test_arrays_and_strings_train_and_come_back_in_their_kind(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((60, 6, 6)) * 255).astype(np.uint8)  # grayscale, no channel axis
    labels = np.arange(60) % 3
    model = plugkit.train("vae", data=(images, labels), epochs=1, out=tmp_path / "img",
                          options=sorted(FAST), progress=False)
    x, y = model.sample(9, seed=1, label=2)
    assert x.shape == (9, 1, 6, 6) and (y == 2).all()
    assert x.dtype == np.uint8 and model.info.meta["bit_depth"] == 8  # as 8-bit as it came
    series = rng.normal(size=(40, 12, 2)).astype(np.float32)
    seq = plugkit.train("vae", data=series, modality="sequence", epochs=1,
                        out=tmp_path / "seq", options=sorted(FAST), progress=False)
    assert seq.sample(5).shape == (5, 12, 2)
    names = ["anna", "bert", "carl", "dora", "emil", "fred"] * 5
    text = plugkit.train("lstm", data=names, epochs=1, out=tmp_path / "txt",
                         options=["hidden=16", "embed=8", "layers=1"], progress=False)
    drawn = text.sample(7, seed=0, temperature=0.5)
    assert len(drawn) == 7 and all(isinstance(s, str) for s in drawn)


def test_a_series_is_a_one_column_table(tmp_path):
    length = load_iris(as_frame=True).frame["sepal length (cm)"]
    model = plugkit.train("vae", data=length, epochs=1, out=tmp_path / "s",
                          options=sorted(FAST), progress=False)
    assert list(model.sample(4).columns) == ["sepal length (cm)"]
    assert plugkit.load(tmp_path / "s", data=length).data().x.shape == (150, 1)  # given back


def test_bad_in_memory_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="string 1 holds a line break"):
        plugkit.train("lstm", data=["ok", "two\nlines"], out=tmp_path / "r", progress=False)
    with pytest.raises(UsageError, match="got dict"):
        plugkit.train("vae", data={"a": [1]}, out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_an_unknown_setting_is_named_with_the_valid_ones():
    with pytest.raises(UsageError, match="unknown setting 'batchsize'; settings: .*batch_size"):
        plugkit.train("vae", data="digits", batchsize=32)


def test_the_cli_takes_in_memory_data_back_as_a_file(tmp_path):
    """A run trained on a DataFrame, continued and evaluated from the CLI on the DataFrame
    saved as CSV; other data is refused by name."""
    from typer.testing import CliRunner

    from plugkit.cli import app

    df = _iris()
    plugkit.train("vae", data=df, epochs=1, out=tmp_path / "run", options=sorted(FAST),
                  progress=False)
    df.to_csv(tmp_path / "iris.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--against",
                                 str(tmp_path / "iris.csv"), "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 2 and "trained on in-memory data (a DataFrame of 150 rows)" in \
        result.output
    result = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "run"), "--data",
                                 str(tmp_path / "iris.csv"), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    df.iloc[:100].to_csv(tmp_path / "part.csv", index=False)
    result = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "run"), "--data",
                                 str(tmp_path / "part.csv"), "--epochs", "3"])
    assert result.exit_code == 1 and "trained on other data" in result.output


def test_options_may_be_a_dict(tmp_path):
    plugkit.train("vae", data="iris", epochs=1, out=tmp_path / "run",
                  options={"hidden": 16, "latent_dim": 3}, progress=False)
    stored = json.loads((tmp_path / "run" / "run.json").read_text())["options"]
    assert stored["hidden"] == 16 and stored["latent_dim"] == 3
