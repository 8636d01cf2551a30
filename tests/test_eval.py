"""`plugkit eval` end to end: known answers on constructed sample files for every modality,
runs of each kind, the report files, and bad input."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from plugkit import evaluate
from plugkit.cli import app
from plugkit.data import load
from plugkit.errors import UsageError
from plugkit.metrics import sets

runner = CliRunner()


def measures(report):
    return {m["name"]: m for m in report.measures}


@pytest.fixture
def iris_halves(tmp_path):
    df = load("iris").x.sample(frac=1.0, random_state=0).reset_index(drop=True)
    df.iloc[:75].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[75:].to_csv(tmp_path / "hold.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "hold.csv"


def test_a_copy_of_the_training_table_scores_its_floor_and_is_flagged(iris_halves,
                                                                      monkeypatch):
    # the single-split design (1,000 held-out records and more), on iris' 75 held-out rows:
    # the floor compares the holdout with training rows, and a copy of them is just that
    monkeypatch.setattr(sets, "SMALL", 50)
    train, hold = iris_halves
    report = evaluate(str(train), against=str(train), holdout=str(hold), target="class")
    m = measures(report)
    assert report.summary["n"] == 75 and report.summary["design"] == "holdout"
    assert all(x["spread"] is None for x in report.measures)  # one comparison, no spread
    for name in ("KS mean (numeric columns)", "TV mean (categorical columns)", "detection AUC",
                 "association difference", "TSTR accuracy (class)"):
        assert m[name]["value"] == pytest.approx(m[name]["floor"]), name  # same sets exactly
    assert m["exact copies"]["value"] == 1.0
    assert m["exact copies"]["floor"] < 0.05  # iris repeats one flower across the halves
    assert m["DCR ratio"]["value"] == 0.0 and m["closer than holdout"]["value"] == 1.0


def test_a_shuffled_table_is_detected(iris_halves, tmp_path):
    train, hold = iris_halves
    fake = pd.read_csv(hold)
    rng = np.random.default_rng(0)
    for column in fake.columns:  # every marginal kept, every association destroyed
        fake[column] = rng.permutation(fake[column].to_numpy())
    fake.to_csv(tmp_path / "fake.csv", index=False)
    m = measures(evaluate(str(tmp_path / "fake.csv"), against=str(train), holdout=str(hold)))
    assert m["association difference"]["value"] > 3 * m["association difference"]["floor"]
    assert m["detection AUC"]["value"] > m["detection AUC"]["floor"] + 0.2
    assert m["exact copies"]["value"] == 0.0


def test_text_copies_and_heldout_lines(tmp_path):
    lines = [f"name{i:03d}" for i in range(200)]
    (tmp_path / "real.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(lines[:100]) + "\n")
    (tmp_path / "hold.txt").write_text("\n".join(lines[100:]) + "\n")
    copied = measures(evaluate(str(tmp_path / "train.txt"), against=str(tmp_path / "train.txt"),
                               holdout=str(tmp_path / "hold.txt")))
    assert copied["copies of training lines"]["value"] == 1.0 and copied["new"]["value"] == 0.0
    held = measures(evaluate(str(tmp_path / "hold.txt"), against=str(tmp_path / "train.txt"),
                             holdout=str(tmp_path / "hold.txt")))
    assert held["held-out only"]["value"] == 1.0
    assert held["copies of training lines"]["value"] == 0.0


def test_noise_is_told_apart_from_sine_windows(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(32)
    real = np.sin(0.4 * t + rng.uniform(0, 6, (400, 1)))[:, :, None].astype(np.float32)
    noise = rng.normal(0, real.std(), real.shape).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "noise.npy", noise)
    m = measures(evaluate(str(tmp_path / "noise.npy"), against=str(tmp_path / "real.npy"),
                          modality="sequence"))
    assert m["detection accuracy"]["value"] > 0.9 and m["detection accuracy"]["floor"] < 0.7
    assert m["autocorrelation distance"]["value"] > 5 * m["autocorrelation distance"]["floor"]
    assert m["TSTR one-step MSE"]["value"] > 10 * m["TSTR one-step MSE"]["floor"]


def _windows_of_one_series(train_rows, holdout_rows):
    """Sets of windows of one noisy series, split at the given window rows, and samples that
    copy training windows (a model that learned the series by heart)."""
    from plugkit.data import Dataset
    from plugkit.metrics.evaluate import Report

    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(0, 1, 1000)).astype(np.float32)
    view = np.lib.stride_tricks.sliding_window_view(series, 16)[:, :, None]  # [985, 16, 1]
    whole = Dataset("series", "sequence", np.ascontiguousarray(view),
                    meta={"series_length": len(series)})
    train, holdout = whole.subset(train_rows), whole.subset(holdout_rows)
    synthetic = Dataset("samples", "sequence", train.x[:200].copy())
    c = sets.Sets("sequence", synthetic, train, holdout, whole.meta, "test", compared=200,
                  starts=sets._starts(train, holdout))
    return c, Report("t", {"notes": []}, [])


def test_privacy_of_windows_of_one_series_uses_only_unseen_held_out_windows():
    from plugkit.metrics.evaluate import _series_privacy, windows_apart

    def flat(x):
        return x.reshape(len(x), -1)

    # a random tenth held out: nearly every held-out window overlaps training windows, so a
    # model that copies the series cannot be told from one that generalizes: left out
    rows = np.random.default_rng(1).permutation(985)
    c, report = _windows_of_one_series(np.sort(rows[100:]), np.sort(rows[:100]))
    assert len(windows_apart(c)) < 20
    _series_privacy(report, c, flat, seed=0)
    assert not report.measures
    assert any("privacy measures (DCR, copies, membership) left out" in n
               for n in report.summary["notes"])
    # a span held out: its windows from step 615 on share no value with the last training
    # window (599-614), the five before it do; the measures see the copies for what they are
    c, report = _windows_of_one_series(np.arange(0, 600), np.arange(610, 985))
    assert windows_apart(c).tolist() == list(range(5, 375))
    _series_privacy(report, c, flat, seed=0)
    m = measures(report)
    assert m["exact copies"]["value"] == 1.0 and m["DCR ratio"]["value"] == 0.0
    assert m["membership AUC (distance)"]["value"] > 0.9
    # records of their own (no starts): every held-out record, as before
    c.starts = None
    assert windows_apart(c) is None


def test_table_run_writes_a_self_contained_report(tmp_path):
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "vae", "--data", "iris", "--out", str(run),
                                  "--epochs", "3", "-o", "hidden=32"])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["eval", str(run), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "detection AUC" in result.stdout
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["modality"] == "table" and metrics["seed"] == 1
    # 15 held-out rows: every one of the 150 real rows takes part, as many samples are drawn
    assert metrics["n"] == 150 and metrics["design"] == "pooled" and metrics["compared"] == 75
    page = (run / "eval" / "report.html").read_text()
    # histograms, associations, embedding, training curves
    assert page.count("data:image/png;base64,") == 4
    assert "http" not in page and "<script" not in page  # opens offline, runs nothing
    assert len(list((run / "eval" / "figures").glob("*.png"))) == 4


@pytest.mark.parametrize("args, code, message", [
    (["x.csv"], 2, "needs --against"),
    (["grid.png", "--against", "digits"], 2, "a PNG grid cannot be evaluated"),
    (["other.csv", "--against", "iris"], 2, "has other columns than the real data"),
    (["empty.csv", "--against", "iris"], 1, "empty"),
    (["iris.csv", "--against", "iris", "--target", "nope"], 2, "nope"),
    (["digits.npy", "--against", "digits"], 2, "shape"),
    (["run-without-weights"], 1, "no trained weights"),
])
def test_bad_input_is_one_line_and_leaves_no_report(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    load("iris").x.to_csv("iris.csv", index=False)
    load("iris").x.to_csv("x.csv", index=False)
    open("grid.png", "wb").close()
    pd.DataFrame({"a": [1, 2]}).to_csv("other.csv", index=False)
    open("empty.csv", "w").close()
    np.save("digits.npy", np.zeros((10, 1, 9, 9), np.float32))
    (tmp_path / "run-without-weights").mkdir()
    (tmp_path / "run-without-weights" / "run.json").write_text(json.dumps(
        {"family": "vae", "data": {"spec": "digits", "modality": "image"}}))
    result = runner.invoke(app, ["eval", *args, "--out", "report"])
    assert result.exit_code == code, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_image_run_eval_measures_and_report(tmp_path, family):
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", family, "--out", str(run), "--epochs", "2",
                                  "-o", "hidden=64", "--batch-size", "128"])
    assert trained.exit_code == 0, trained.output
    report = evaluate(str(run), out=tmp_path / "report")
    m = measures(report)
    # 180 held-out digits: pooled, as many samples as real digits, halves of 898 compared
    assert report.summary["n"] == 1797 and report.summary["compared"] == 898
    assert m["Fréchet distance"]["value"] > m["Fréchet distance"]["floor"] > 0
    assert m["detection accuracy"]["floor"] < 0.65  # real against real: hard to tell apart
    assert m["detection accuracy"]["value"] > m["detection accuracy"]["floor"]
    assert 0 <= m["precision"]["value"] <= 1 and m["exact copies"]["value"] == 0
    assert report.details["feature_net_accuracy"] > 0.9  # a feature space worth trusting
    again = evaluate(str(run))  # deterministic given the seed, feature net from the cache
    assert [x["value"] for x in again.measures] == [x["value"] for x in report.measures]
    assert len(list((tmp_path / "report" / "figures").glob("*.png"))) == 3
    # conditional by default on digits: within-class diversity, per class too, in every output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    saved = {x["name"]: x for x in metrics["measures"]}
    for name in ("within-class diversity (mean)", "within-class diversity (min)"):
        assert saved[name] == m[name] and 0.8 < m[name]["floor"] < 1.2, name
        assert m[name]["spread"] is not None  # five pooled repeats
    assert [row["class"] for row in metrics["details"]["within_class_diversity"]] == \
        [str(k) for k in range(10)]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Within-class diversity per class, least diverse first" in page


def test_an_unconditional_image_run_says_why_it_has_no_within_class_diversity(tmp_path):
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "vae", "--out", str(run), "--epochs", "1",
                                  "-o", "hidden=32", "-o", "conditional=false"])
    assert trained.exit_code == 0, trained.output
    report = evaluate(str(run), n=400)
    assert not any(x["name"].startswith("within-class") for x in report.measures)
    assert "within_class_diversity" not in report.details
    assert any("within-class diversity left out: the samples carry no labels" in note
               for note in report.summary["notes"])


def test_text_run_reports_heldout_nll_per_character(tmp_path):
    names = [f"{a}{b}{c}" for a in "bdk" for b in "aeiou" for c in "lnrs"] * 3
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "lstm", "--data", str(tmp_path / "names.txt"),
                                  "--out", str(run), "--epochs", "3", "--json", "-o",
                                  "hidden=32", "-o", "layers=1"])
    assert trained.exit_code == 0, trained.output
    last = json.loads(trained.stdout.strip().splitlines()[-1])
    m = measures(evaluate(str(run)))
    assert m["held-out NLL (nats/char)"]["value"] == pytest.approx(last["val_loss"], rel=1e-5)
    assert 0 <= m["new"]["value"] <= 1 and m["unique"]["value"] > 0


def test_sequence_run_eval(tmp_path):
    t = np.arange(24.0)
    waves = np.sin(0.5 * t + np.random.default_rng(0).uniform(0, 6, (300, 1)))
    np.save(tmp_path / "waves.npy", waves[:, :, None].astype(np.float32))
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "lstm", "--data", str(tmp_path / "waves.npy"),
                                  "--modality", "sequence", "--out", str(run), "--epochs", "2",
                                  "-o", "hidden=16", "-o", "layers=1"])
    assert trained.exit_code == 0, trained.output
    m = measures(evaluate(str(run)))
    assert {"marginal KS", "autocorrelation distance", "detection accuracy",
            "TSTR one-step MSE", "DCR ratio"} <= m.keys()
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["held-out NLL (nats/value)"]["value"] == pytest.approx(last["val_loss"], rel=1e-5)


def test_label_accuracy_of_labelled_image_samples(tmp_path):
    digits = load("digits")
    np.savez(tmp_path / "train.npz", x=digits.x[:1200], labels=digits.labels[:1200])
    np.savez(tmp_path / "hold.npz", x=digits.x[1200:], labels=digits.labels[1200:])
    wrong = (digits.labels[1200:] + 1) % 10
    np.savez(tmp_path / "wrong.npz", x=digits.x[1200:], labels=wrong)
    common = {"against": str(tmp_path / "train.npz"), "holdout": str(tmp_path / "hold.npz")}
    right = measures(evaluate(str(tmp_path / "hold.npz"), **common))["label accuracy"]
    assert right["value"] == right["floor"] > 0.9  # the held-out images, labelled correctly
    assert measures(evaluate(str(tmp_path / "wrong.npz"), **common))["label accuracy"][
        "value"] < 0.1


def test_within_class_diversity_of_labelled_image_samples(tmp_path):
    # known answers: samples that repeat one training image per class are collapsed (0);
    # held-out images labelled right are as varied as real data (about the floor, about 1)
    digits = load("digits")
    train_x, train_y, hold_x, hold_y = (digits.x[:1200], digits.labels[:1200],
                                        digits.x[1200:], digits.labels[1200:])
    np.savez(tmp_path / "train.npz", x=train_x, labels=train_y)
    np.savez(tmp_path / "hold.npz", x=hold_x, labels=hold_y)
    first = np.array([np.flatnonzero(train_y == k)[0] for k in range(10)])
    np.savez(tmp_path / "one.npz", x=train_x[first[hold_y]], labels=hold_y)
    common = {"against": str(tmp_path / "train.npz"), "holdout": str(tmp_path / "hold.npz")}
    one = measures(evaluate(str(tmp_path / "one.npz"), **common))
    fresh = measures(evaluate(str(tmp_path / "hold.npz"), **common))
    for name in ("within-class diversity (mean)", "within-class diversity (min)"):
        assert one[name]["value"] == 0.0, name
        assert fresh[name]["floor"] == one[name]["floor"]  # the floor ignores the samples
        assert abs(fresh[name]["value"] - fresh[name]["floor"]) < 0.1, name
    assert 0.95 < fresh["within-class diversity (mean)"]["floor"] < 1.05
    assert fresh["within-class diversity (min)"]["floor"] > 0.8
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, x=hold_x)
    report = evaluate(str(unlabelled), **common)
    assert "within-class diversity (mean)" not in measures(report)
    assert any("samples carry no labels" in note for note in report.summary["notes"])


def test_a_dataset_with_its_own_test_part_is_judged_on_it(tmp_path, monkeypatch):
    # adult declares adult-test (the census' own split); the same mechanism on two iris halves,
    # so the test runs without the optional dataset. Neither the run's validation rows nor a
    # half of --against are the holdout then: the declared test part is.
    from plugkit.data import builtin

    df = load("iris").x.sample(frac=1.0, random_state=0).reset_index(drop=True)
    df = pd.concat([df] * 8, ignore_index=True)  # 1,200 rows: 1,000+ held out, one comparison

    def half(name, rows, meta):
        return lambda: builtin.Dataset(name, "table", df.iloc[rows].reset_index(drop=True),
                                       meta={"target": "class", **meta})

    entry = builtin.REGISTRY["iris"]
    for name, rows, meta in [("part-train", slice(0, 150), {"holdout": "part-test"}),
                             ("part-test", slice(150, None), {})]:
        monkeypatch.setitem(builtin.REGISTRY, name, builtin.Builtin(
            **{**entry.__dict__, "name": name, "loader": half(name, rows, meta)}))
    df.iloc[:150].to_csv(tmp_path / "copy.csv", index=False)

    from_file = evaluate(str(tmp_path / "copy.csv"), against="part-train", n=1050)
    assert from_file.summary["train_size"] == 150 and from_file.summary["holdout_size"] == 1050
    assert from_file.summary["design"] == "holdout"
    assert any("part-test (1,050 records)" in note for note in from_file.summary["notes"])

    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "vae", "--data", "part-train", "--out", str(run),
                                  "--epochs", "1", "-o", "hidden=16"])
    assert trained.exit_code == 0, trained.output
    report = evaluate(str(run), n=300)
    assert report.summary["holdout_size"] == 1050  # not the run's 15 validation rows
    assert report.summary["train_size"] == 135  # what the run trained on


def test_held_out_nll_reads_a_test_part_in_the_runs_own_vocabulary(tmp_path, monkeypatch):
    # The test part makes a vocabulary of its own (only "b" and "c": other token numbers than
    # the run's "a", "b", "c"); the model must be scored on the tokens it was trained with.
    from plugkit.data import builtin
    from plugkit.formats import text
    from plugkit.runs import Run
    from plugkit.trainer import validate

    lines = {"txt-train": ["abc", "cab", "bca", "aab"] * 40, "txt-test": ["bc", "cb", "ccb"] * 20}
    for name, meta in [("txt-train", {"holdout": "txt-test"}), ("txt-test", {})]:
        monkeypatch.setitem(builtin.REGISTRY, name, builtin.Builtin(
            name, "text", name, "-", lambda: True,
            lambda name=name, meta=meta: builtin._with_test_part(
                builtin._text(name, lines[name]), not meta, "txt-test")))
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "lstm", "--data", "txt-train", "--out", str(run),
                                  "--epochs", "20", "-o", "hidden=16"])
    assert trained.exit_code == 0, trained.output
    reported = measures(evaluate(str(run), n=60))["held-out NLL (nats/char)"]["value"]
    family = Run(run).model()
    test = lines["txt-test"]

    def nll(vocab):
        return validate(family, torch.from_numpy(text.encode(test, vocab)), None, 256,
                        family.device)

    assert reported == pytest.approx(nll(["a", "b", "c"]), rel=1e-6)
    assert abs(nll(["b", "c"]) - reported) > 0.05  # what the test part's own vocabulary gives


def test_sample_windows_against_a_series_in_a_csv_with_window(tmp_path):
    """Windows sampled from a `--window` run, judged against the CSV series they came from and
    a later span of it held out: what the privacy note tells a user to run."""
    t = np.arange(400)
    series = pd.DataFrame({"level": np.sin(t / 9) + 5, "flow": np.cos(t / 5) + 3})
    series[:300].to_csv(tmp_path / "early.csv", index=False)
    series[300:].to_csv(tmp_path / "late.csv", index=False)
    view = np.lib.stride_tricks.sliding_window_view(series[:300].to_numpy(), 12, axis=0)
    np.save(tmp_path / "copies.npy", view.transpose(0, 2, 1)[::3].astype(np.float32))
    report = evaluate(tmp_path / "copies.npy", against=str(tmp_path / "early.csv"),
                      holdout=str(tmp_path / "late.csv"), window=12, threads=1)
    assert report.summary["modality"] == "sequence"
    assert measures(report)["exact copies"]["value"] == 1.0  # copies of the series, seen
    from plugkit.metrics.evaluate import evaluate as evaluate_source

    a_run = SimpleNamespace(draw=None)  # a run knows its window
    with pytest.raises(UsageError, match="`against`/`holdout`/`window` are for sample files"):
        evaluate_source(a_run, window=12)
