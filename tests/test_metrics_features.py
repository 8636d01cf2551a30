"""The feature net behind plugkit eval: accurate, deterministic, cached safely, strict on input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from plugkit.errors import UsageError
from plugkit.metrics import features as F


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.images / 16).astype(np.float32)[:, None], d.target  # (1797, 1, 8, 8)


@pytest.fixture(scope="module")
def supervised(digits, tmp_path_factory):
    return F.feature_net(*digits, cache_dir=tmp_path_factory.mktemp("sup"))


@pytest.fixture
def trainings(monkeypatch):
    """Counts real trainings, so a test can tell a cache hit from a rebuild."""
    calls, train = [], F._train
    monkeypatch.setattr(F, "_train", lambda *a: (calls.append(1), train(*a)))
    return calls


def test_supervised_net_classifies_held_out_digits(supervised, digits):
    x, y = digits
    assert supervised.has_classes and supervised.accuracy >= 0.9
    assert np.mean(supervised.predict(x) == y) >= 0.9
    z = supervised.features(x)
    assert z.shape == (len(x), F.DIM) and z.dtype == np.float64 and np.isfinite(z).all()


def test_same_seed_same_bits_and_second_call_is_a_cache_hit(digits, tmp_path, monkeypatch,
                                                            trainings):
    monkeypatch.setattr(F, "STEPS", 30)  # determinism does not need a good net
    x, y = digits[0][:300], digits[1][:300]
    a = F.feature_net(x, y, seed=3, cache_dir=tmp_path / "a")
    b = F.feature_net(x, y, seed=3, cache_dir=tmp_path / "b")
    c = F.feature_net(x, y, seed=3, cache_dir=tmp_path / "a")
    assert len(trainings) == 2  # a and b trained, c came from a's cache
    assert np.array_equal(a.features(x), b.features(x))
    assert np.array_equal(a.features(x), c.features(x)) and c.accuracy == a.accuracy
    other = F.feature_net(x, y, seed=4, cache_dir=tmp_path / "a")
    assert not np.array_equal(a.features(x), other.features(x))
    names = sorted(p.suffix for p in (tmp_path / "a").iterdir())
    assert names == [".json", ".json", ".safetensors", ".safetensors"]  # nothing pickled


def test_cache_key_covers_images_labels_shape_and_seed(digits):
    x, y = digits
    nudged, relabelled = x.copy(), y.copy()
    nudged[0, 0, 3, 3] += 1 / 16
    relabelled[0] = (y[0] + 1) % 10
    variants = [(x, y, 0), (nudged, y, 0), (x, relabelled, 0), (x, None, 0), (x, y, 1),
                (x.reshape(-1, 1, 4, 16), y, 0)]
    assert len({F.cache_key(*v) for v in variants}) == len(variants)
    assert F.cache_key(x.copy(), y.copy(), 0) == F.cache_key(x, y, 0)


def test_without_labels_rotation_features_separate_zeros_from_ones(digits, tmp_path):
    x, y = digits
    net = F.feature_net(x, None, cache_dir=tmp_path)
    assert not net.has_classes and net.accuracy > 0.5  # four rotations: chance is 0.25
    with pytest.raises(UsageError, match="without labels"):
        net.predict(x)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = F.FeatureNet(1, (8, 8), 4, has_classes=False)
    # the gap between the 0 and 1 centroids over the classes' spread; measured 1.76, and 1.48
    # for the same net untrained (random conv features are no weak baseline on 8x8 digits)
    assert _separation(net, x, y) > max(1.25, _separation(untrained, x, y))


def _separation(net: F.FeatureNet, x: np.ndarray, y: np.ndarray) -> float:
    zeros, ones = net.features(x[y == 0]), net.features(x[y == 1])
    within = np.mean([np.linalg.norm(z - z.mean(0), axis=1).mean() for z in (zeros, ones)])
    return float(np.linalg.norm(zeros.mean(0) - ones.mean(0)) / within)


def test_non_square_images_train_on_flips(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(F, "STEPS", 20)
    x = np.concatenate([digits[0][:64], digits[0][:64]], axis=3)  # (64, 1, 8, 16)
    net = F.feature_net(x, cache_dir=tmp_path)
    assert not net.has_classes and 0 <= net.accuracy <= 1
    assert net.features(x).shape == (64, F.DIM)


def test_mismatched_images_raise_a_usage_error_naming_both_shapes(supervised, digits):
    x = digits[0]
    with pytest.raises(UsageError, match=r"\(5, 1, 9, 9\).*\(N, 1, 8, 8\)"):
        supervised.features(np.zeros((5, 1, 9, 9), np.float32))
    with pytest.raises(UsageError, match=r"\(5, 3, 8, 8\)"):
        supervised.predict(np.zeros((5, 3, 8, 8), np.float32))
    for bad in (x[:5], x[:, 0], np.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0))), x[:, :, :7]):
        with pytest.raises(UsageError):
            F.feature_net(bad, cache_dir="/nonexistent")
    with pytest.raises(UsageError, match="labels"):
        F.feature_net(x, digits[1][:-1], cache_dir="/nonexistent")


@pytest.mark.parametrize("damage", ["truncate weights", "flip a weight byte", "garbage json",
                                    "delete json"])
def test_damaged_cache_entry_is_rebuilt(digits, tmp_path, monkeypatch, trainings, damage):
    monkeypatch.setattr(F, "STEPS", 10)
    x, y = digits[0][:100], digits[1][:100]
    first = F.feature_net(x, y, cache_dir=tmp_path).features(x)
    weights = next(tmp_path.glob("*.safetensors"))
    meta = weights.with_suffix(".json")
    if damage == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip a weight byte":
        raw = bytearray(weights.read_bytes())
        raw[-5] ^= 0xFF  # inside the tensor data: safetensors alone would not notice
        weights.write_bytes(bytes(raw))
    elif damage == "garbage json":
        meta.write_text("{not json")
    else:
        meta.unlink()
    again = F.feature_net(x, y, cache_dir=tmp_path)
    assert len(trainings) == 2
    assert np.array_equal(again.features(x), first)
    assert json.loads(meta.read_text())["weights_sha256"] == F._sha(weights)


def test_cache_dir_defaults_to_plugkit_cache(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(F, "STEPS", 5)
    monkeypatch.setenv("PLUGKIT_CACHE", str(tmp_path))
    F.feature_net(digits[0][:50], cache_dir=None)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
