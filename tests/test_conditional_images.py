"""Class-conditional images: the families learn p(image | label), and sampling draws per class
(`--label`, `--per-class`, the training data's class mix by default), writes the labels into
.npz and orders a .png grid by class."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import run_python
from PIL import Image
from sklearn.linear_model import LogisticRegression

from plugkit import data, options, runs, sampling
from plugkit.errors import UsageError
from plugkit.families.gan import GAN
from plugkit.families.vae import VAE
from plugkit.family import Batch, DataInfo


@pytest.fixture(scope="module")
def digits():
    ds = data.load("digits", None, None)
    clf = LogisticRegression(max_iter=2000).fit(ds.x.reshape(len(ds.x), -1), ds.labels)
    return ds, clf


def label_accuracy(cls, opts, digits, epochs=10):
    """Trains on digits with labels, then how often a classifier of real digits gives each
    sample the label it was drawn for."""
    ds, clf = digits
    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.labels)
    torch.manual_seed(0)
    family = cls(options.parse(cls.Options, opts, cls.name),
                 DataInfo("image", ds.meta, ds.classes), torch.device("cpu"))
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            family.train_step(Batch(x[perm[i:i + 64]], y[perm[i:i + 64]]))
    labels = torch.arange(500) % 10
    drawn = family.sample(500, generator=torch.Generator().manual_seed(0), labels=labels)
    return family, (clf.predict(drawn.reshape(500, -1).numpy()) == labels.numpy()).mean()


@pytest.mark.parametrize("cls, opts", [(VAE, []), (GAN, ["lr_g=1e-3", "lr_d=1e-3"])])
def test_samples_have_the_label_they_were_drawn_for(digits, cls, opts):
    family, accuracy = label_accuracy(cls, opts, digits)
    assert family.num_classes == 10
    assert accuracy > 0.8, accuracy  # measured: vae 1.0, gan 0.96 after 10 epochs


def test_an_unconditional_model_ignores_labels(digits):
    """The control: with conditional=false the same check is near chance, so the test above
    measures the conditioning."""
    family, accuracy = label_accuracy(VAE, ["conditional=false"], digits)
    assert family.num_classes == 0
    assert accuracy < 0.3, accuracy


def test_quota_splits_n_in_proportion():
    counts = runs._quota(np.array([5.0, 3.0, 2.0]), 7)
    assert counts.sum() == 7 and list(counts) == [4, 2, 1]
    assert list(runs._quota(np.ones(10), 64)) == [7, 7, 7, 7, 6, 6, 6, 6, 6, 6]


RECORD = {"data": {"classes": ["cat", "dog", "owl"], "class_counts": [10, 30, 60]}}


class FakeRun(runs.Run):
    """A Run with a record and a model's num_classes, and nothing on disk."""

    def __init__(self, classes, num_classes):
        self.path, self.record = Path("the-run"), {"data": {
            "classes": classes, "class_counts": [10, 30, 60] if classes else None}}
        self._num_classes = num_classes

    def model(self, weights="best", device="cpu"):
        return SimpleNamespace(num_classes=self._num_classes)


def test_labels_of_a_draw():
    run = FakeRun(["cat", "dog", "owl"], 3)
    assert list(run.labels(4, label="dog")) == [1] * 4
    assert list(run.labels(2, label="2")) == [2, 2]  # an index
    assert list(run.labels(6, per_class=2)) == [0, 0, 1, 1, 2, 2]
    assert list(run.labels(10)) == [0] + [1] * 3 + [2] * 6  # the data's mix
    with pytest.raises(UsageError, match="'fox' is not a class of this run; classes: cat, dog"):
        run.labels(4, label="fox")
    plain = FakeRun(["cat", "dog", "owl"], 0)
    assert plain.labels(4) is None
    with pytest.raises(UsageError, match="`label`: .* not class-conditional"):
        plain.labels(4, label="cat")
    with pytest.raises(UsageError, match="`per_class`: .* its data has no labels"):
        FakeRun(None, 0).labels(4, per_class=1)
    with pytest.raises(UsageError, match="`label` and `per_class` disagree"):
        run.labels(4, label="dog", per_class=2)  # all of one class, or some of every one?


def test_per_class_and_n_must_agree():
    assert sampling._count(None, 3, RECORD) == 9
    assert sampling._count(9, 3, RECORD) == 9
    with pytest.raises(UsageError, match="`n` 10 and `per_class` 3 disagree: 3 classes x 3"):
        sampling._count(10, 3, RECORD)
    assert sampling._count(None, None, RECORD) == 64


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cond") / "vae"
    result = run_python("-m", "plugkit", "train", "vae", "--data", "digits", "--epochs", "1",
                        "--out", str(run), cwd=run.parent)
    assert result.returncode == 0, result.stderr
    return run


def test_cli_per_class_grid_and_labelled_npz(conditional_run, tmp_path):
    grid = tmp_path / "g.png"
    result = run_python("-m", "plugkit", "sample", str(conditional_run), "--per-class", "3",
                        "--out", str(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # one class per row: 10 rows x 3 columns of 8x8 tiles with 1 px padding
    assert Image.open(grid).size == (3 * 66 + 2, 10 * 66 + 2)  # 8x8 tiles x8
    sidecar = json.loads((tmp_path / "g.png.json").read_text())
    assert sidecar["per_class"] == 3 and sidecar["classes"][:2] == ["0", "1"]

    npz = tmp_path / "s.npz"
    result = run_python("-m", "plugkit", "sample", str(conditional_run), "--n", "50",
                        "--out", str(npz), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with np.load(npz, allow_pickle=False) as f:
        assert f["x"].shape == (50, 1, 8, 8) and f["labels"].dtype == np.int64
        assert (np.diff(f["labels"]) >= 0).all()  # class order
        assert set(np.bincount(f["labels"])) <= {4, 5, 6}  # digits' nearly even mix
    again = data.load(str(npz), None, None)  # plugkit reads its own labelled output back
    assert list(again.labels) == list(np.load(npz)["labels"])


def test_cli_label_and_bad_labels(conditional_run, tmp_path):
    out = tmp_path / "sevens.npz"
    result = run_python("-m", "plugkit", "sample", str(conditional_run), "--label", "7",
                        "--n", "5", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(np.load(out)["labels"]) == [7] * 5
    bad = run_python("-m", "plugkit", "sample", str(conditional_run), "--label", "eleven",
                     "--out", str(tmp_path / "x.npz"), cwd=tmp_path)
    assert bad.returncode == 2 and "classes: 0, 1, 2" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.npz").exists()
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == ["labels.npy", "x.npy"]


def test_cli_augment_reports_the_gain_and_writes_the_augmented_set(conditional_run, tmp_path):
    out = tmp_path / "aug.npz"
    result = run_python("-m", "plugkit", "augment", str(conditional_run), "--per-class", "20",
                        "--out", str(out), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    accuracy = report["accuracy"]
    assert set(accuracy) == {"real", "real + synthetic", "synthetic"}
    assert all(0.0 <= v <= 1.0 for v in accuracy.values())
    assert accuracy["real"] > 0.9  # logistic regression on real digits
    assert report["gain"] == pytest.approx(accuracy["real + synthetic"] - accuracy["real"])
    assert report["synthetic"] == 200 and report["holdout"] == 180
    with np.load(out, allow_pickle=False) as f:
        assert f["x"].shape == (report["real_train"] + 200, 1, 8, 8)
        assert list(np.bincount(f["labels"][-200:])) == [20] * 10


def test_cli_augment_refuses_what_it_cannot_use(conditional_run, tmp_path):
    bad = run_python("-m", "plugkit", "augment", str(conditional_run), "--out",
                     str(tmp_path / "a.csv"), cwd=tmp_path)
    assert bad.returncode == 2 and "--out must end in .npz" in bad.stderr
    table = tmp_path / "iris"
    assert run_python("-m", "plugkit", "train", "vae", "--data", "iris", "--epochs", "1",
                      "--out", str(table), cwd=tmp_path).returncode == 0
    bad = run_python("-m", "plugkit", "augment", str(table), cwd=tmp_path)
    assert bad.returncode == 2 and "needs an image run trained on labelled data" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
