"""Bounded sequence features (plugkit.formats.sequence): read from the data, mapped onto the
real line before standardizing, and samples decoded inside them whatever a family draws."""

import numpy as np
import pytest

import plugkit
from plugkit.data import dataset
from plugkit.family import DataInfo
from plugkit.formats import codec, sequence


def windows():
    """(30, 8, 4): counts with exact zeros, a share touching 0 and 1, a signed series, and a
    positive series far from 0."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, (30, 8)) * 1.5
    share = rng.beta(0.7, 0.7, (30, 8))
    share[0, :2] = 0.0, 1.0
    signed = rng.normal(size=(30, 8))
    level = 300 + rng.normal(size=(30, 8))
    return np.stack([counts, share, signed, level], axis=-1).astype(np.float32)


def test_bounds_are_the_ones_the_data_shows():
    x = windows()
    counts, share, signed, level = sequence.moments(x)["bounds"]
    assert counts == {"lower": 0.0, "gap": 0.75, "exact": ["lower"],
                      "scale": pytest.approx(x[..., 0].std())}
    assert share["lower"] == 0.0 and share["upper"] == 1.0 and share["exact"] == ["lower", "upper"]
    assert signed is None  # a negative value: no bound, not even the observed range
    assert level["lower"] == 0.0 and "upper" not in level and level["exact"] == []
    assert sequence.moments(np.ones((3, 4, 1), np.float32)) == {"mean": [1.0], "std": [1.0],
                                                               "window_spread": [1.0]}


def test_encoding_and_decoding_is_the_identity_bounds_included():
    x = windows()
    ds = dataset.validate(dataset.Dataset("w", "sequence", x.copy()))
    encoded, _ = codec.encode(ds)
    back = codec.decode(DataInfo("sequence", ds.meta), encoded)
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-5)
    assert (back[x == 0] == 0).all() and (back[..., 1][x[..., 1] == 1] == 1).all()  # exact
    # values past a bound (another file's, an old run's samples in eval) encode as on it
    outside = sequence.standardize(x - 2, ds.meta)
    assert np.isfinite(outside).all() and outside[..., 0].min() == encoded[..., 0].min()


def test_whatever_a_family_draws_decodes_inside_the_bounds():
    x = windows()
    meta = sequence.moments(x)
    drawn = np.random.default_rng(1).normal(0, 10, (500, 8, 4)).astype(np.float32)
    back = sequence.destandardize(drawn, meta)
    assert back[..., [0, 1, 3]].min() >= 0 and back[..., 1].max() <= 1
    mean, std = np.float32(meta["mean"][2]), np.float32(meta["std"][2])
    assert (back[..., 2] == drawn[..., 2] * std + mean).all()  # the signed feature: untouched
    assert back[..., 2].min() < x[..., 2].min()  # and not clipped to the data's range
    # far from its bound the map is all but affine: a std of level is a std of its codes
    codes = sequence.standardize(x, meta)[..., 3]
    assert codes.std() == pytest.approx(1) and np.corrcoef(codes.ravel(), x[..., 3].ravel())[
        0, 1] > 0.9999


def test_samples_sit_on_a_bound_only_where_the_data_does():
    """Snapping onto a bound gives samples the data's exact zeros; a series with none (a
    positive series near 0) must not get them from a model that undershoots."""
    rng = np.random.default_rng(2)
    x = np.stack([rng.poisson(2.0, (30, 8)) * 1.0,  # counts, exact zeros
                  rng.uniform(0.05, 3, (30, 8)),  # positive, no zero
                  rng.uniform(0.1, 0.9, (30, 8))], -1).astype(np.float32)  # a share, no 0 or 1
    meta = sequence.moments(x)
    assert [b["exact"] for b in meta["bounds"]] == [["lower"], [], []]
    drawn = np.random.default_rng(3).normal(0, 2, (400, 8, 3)).astype(np.float32)
    back = sequence.destandardize(drawn, meta)
    assert (back[..., 0] == 0).mean() > 0.05  # the counts' zeros are drawn
    assert (back[..., 1:] > 0).all() and (back[..., 2] < 1).all()
    # values do come within the snapping distance of the bounds, only not onto them
    assert back[..., 1].min() < x[..., 1].min() / 2 and back[..., 2].max() > 0.99


def test_a_meta_without_bounds_decodes_as_before():
    meta = {"length": 8, "features": 4, "mean": [1.5, 0.5, 0.0, 300.0],
            "std": [2.0, 0.3, 1.0, 1.0]}  # a run.json from before the bounds
    drawn = np.random.default_rng(2).normal(size=(50, 8, 4)).astype(np.float32)
    mean, std = np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
    back = codec.decode(DataInfo("sequence", meta), drawn)
    assert back.dtype == np.float32 and (back == drawn * std + mean).all()
    assert (back[..., 0] < 0).any()  # negatives and all, as it always did
    x = windows()
    assert (sequence.standardize(x, meta) == ((x - mean) / std).astype(np.float32)).all()


def train_lstm(x, out):
    model = plugkit.train("lstm", data=x, modality="sequence", epochs=2, out=out,
                          options=["hidden=16", "layers=1"], progress=False)
    return model.sample(200, seed=0)


def test_a_trained_family_samples_non_negative_data_as_non_negative(tmp_path, monkeypatch):
    # |N(0, 1)|: a third of the values within 0.4 std of 0, where a Gaussian head spills over
    x = np.abs(np.random.default_rng(0).normal(size=(100, 16, 1))).astype(np.float32)
    assert train_lstm(x, tmp_path / "bounded").min() >= 0
    monkeypatch.setattr(sequence, "_bounds", lambda v: None)  # the same, without bounds
    assert (train_lstm(x, tmp_path / "plain") < 0).mean() > 0.02
