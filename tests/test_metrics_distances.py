"""Known answers for the feature-space distances, the privacy measures and detection."""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from plugkit.errors import UsageError
from plugkit.metrics import baseline, distances
from plugkit.metrics.detection import detection
from plugkit.metrics.distances import (
    closest_distances,
    exact_copy_rate,
    frechet_distance,
    kid,
    prdc,
    privacy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def with_moments(rng, n, mean, cov):
    """n samples whose sample mean and covariance (ddof=1) are exactly `mean` and `cov`."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mean


def random_cov(rng, d):
    m = rng.normal(size=(d, d))
    return m @ m.T / d + 0.1 * np.eye(d)


# --- Fréchet distance ----------------------------------------------------------------------------


def test_frechet_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9)


def test_frechet_matches_the_closed_form_for_commuting_covariances():
    # S_a = Q diag(a) Q^T and S_b = Q diag(b) Q^T commute, so the trace term is
    # sum (sqrt(a) - sqrt(b))^2 and FD = |mu_a - mu_b|^2 + that.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    var_a, var_b = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 4, 8)
    mu_a, mu_b = rng.normal(size=8), rng.normal(size=8)
    a = with_moments(rng, 400, mu_a, q @ np.diag(var_a) @ q.T)
    b = with_moments(rng, 300, mu_b, q @ np.diag(var_b) @ q.T)
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_matches_scipy_sqrtm_for_general_covariances():
    rng = np.random.default_rng(2)
    cov_a, cov_b = random_cov(rng, 6), random_cov(rng, 6)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    a, b = with_moments(rng, 200, mu_a, cov_a), with_moments(rng, 200, mu_b, cov_b)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_large_gaussian_samples_approaches_the_population_value():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, size=(20000, 4))
    b = rng.normal(0.5, 2, size=(20000, 4))
    assert frechet_distance(a, b) == pytest.approx(4 * 0.5**2 + 4 * (2 - 1) ** 2, rel=0.03)


def test_frechet_survives_a_singular_covariance():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(50, 3))
    a[:, 2] = a[:, 0]  # rank 2: the square root must not go complex or negative
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a[:, :1], a[:, :1] + 3) == pytest.approx(9)


# --- KID -----------------------------------------------------------------------------------------


def test_kid_equals_the_unbiased_mmd_written_out():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 3)), rng.normal(1, 1, size=(7, 3))[:6]
    k = lambda p, q: (p @ q / 3 + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    # subset_size >= N: every subset is the whole set, in some order.
    out = kid(x, y, subsets=3, subset_size=100)
    assert out["kid"] == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    assert out["kid_std"] == pytest.approx(0, abs=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_clearly_positive_for_a_shift():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    same = kid(a, b, subsets=20, subset_size=500)
    shifted = kid(a, b + 0.5, subsets=20, subset_size=500)
    assert abs(same["kid"]) < 0.02
    assert shifted["kid"] > 0.5 and shifted["kid"] > 5 * shifted["kid_std"]


def test_kid_is_deterministic_given_the_seed():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    assert kid(a, b, subsets=5, subset_size=50, seed=1) == kid(a, b, subsets=5,
                                                                  subset_size=50, seed=1)
    assert kid(a, b, subsets=5, subset_size=50, seed=1) != kid(a, b, subsets=5,
                                                                  subset_size=50, seed=2)


# --- PRDC ----------------------------------------------------------------------------------------


def test_prdc_on_a_hand_worked_example():
    # k=1: every real ball on 0, 1, 2, 3 has radius 1. Fake 0.5 sits in the balls of 0 and 1,
    # fake 10 in none; the fake radii are both 9.5, wide enough to hold every real point.
    real, fake = np.array([[0.0], [1], [2], [3]]), np.array([[0.5], [10]])
    assert prdc(real, fake, k=1) == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5})


def test_prdc_of_identical_sets_is_perfect():
    x = np.random.default_rng(8).normal(size=(400, 8))
    out = prdc(x, x, k=5)
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    assert out["density"] == pytest.approx(1.0, abs=0.1)


def test_prdc_of_far_apart_sets_is_zero():
    rng = np.random.default_rng(9)
    out = prdc(rng.normal(size=(300, 8)), rng.normal(100, 1, size=(200, 8)))
    assert out == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_sees_mode_collapse_as_low_recall_and_coverage_but_high_precision():
    rng = np.random.default_rng(10)
    real = rng.normal(size=(600, 2))
    collapsed = rng.normal(0, 0.1, size=(600, 2))  # all fakes in the middle of the real mass
    out = prdc(real, collapsed, k=5)
    assert out["precision"] > 0.95 and out["recall"] < 0.1 and out["coverage"] < 0.2


def test_prdc_is_the_same_in_chunks(monkeypatch):
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(300, 5)), rng.normal(0.3, 1, size=(250, 5))
    whole = prdc(real, fake)
    monkeypatch.setattr(distances, "CHUNK", 7)
    assert prdc(real, fake) == pytest.approx(whole)


# --- privacy -------------------------------------------------------------------------------------


def test_closest_distances_on_a_grid(monkeypatch):
    monkeypatch.setattr(distances, "CHUNK", 2)
    reference = np.array([[0.0, 0.0], [10.0, 0.0]])
    query = np.array([[3.0, 4.0], [10.0, -2.0], [0.0, 0.0], [7.0, 0.0], [5.0, 0.0]])
    np.testing.assert_allclose(closest_distances(query, reference), [5, 2, 0, 3, 5], atol=1e-9)


def test_a_copied_training_set_is_all_memorized():
    rng = np.random.default_rng(12)
    train, holdout = rng.normal(size=(400, 6)), rng.normal(size=(400, 6))
    out = privacy(train[::-1], train, holdout)
    assert out["dcr_ratio"] == pytest.approx(0, abs=1e-6)
    assert out["closer_than_holdout"] == 1.0
    assert exact_copy_rate(train[::-1], train) == 1.0


def test_fresh_samples_sit_at_the_holdout_level():
    rng = np.random.default_rng(13)
    train, holdout, fresh = (rng.normal(size=(1000, 4)) for _ in range(3))
    out = privacy(fresh, train, holdout)
    assert out["dcr_ratio"] == pytest.approx(1, abs=0.1)
    assert out["closer_than_holdout"] == pytest.approx(0.5, abs=0.1)
    assert out["dcr_holdout_median"] == pytest.approx(np.median(closest_distances(holdout, train)))
    assert exact_copy_rate(fresh, train) == 0.0


def test_exact_copy_rate_counts_rows_and_strings():
    train = np.arange(12.0).reshape(6, 2)
    synthetic = np.array([[0.0, 1], [1, 0], [10, 11], [2, 3.5]])
    assert exact_copy_rate(synthetic, train) == 0.5
    assert exact_copy_rate(-0.0 * train, 0.0 * train) == 1.0  # -0.0 == 0.0 as numbers
    assert exact_copy_rate(np.zeros((4, 3, 2)), np.zeros((1, 3, 2))) == 1.0  # sequences
    assert exact_copy_rate(["anna", "bob", "anna", "zed"], ["anna", "carl"]) == 0.5
    assert exact_copy_rate(pd.Series(["anna", "bob"], dtype="string"), ("bob",)) == 0.5


# --- detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["hgb", "logistic"])
def test_detection_of_identical_sets_is_chance(model):
    x = np.random.default_rng(14).normal(size=(300, 6))
    assert detection(x, x.copy(), model=model) == {"accuracy": 0.5, "auc": 0.5}


def test_detection_of_a_partly_copying_generator_is_near_chance():
    # Copies sit in the same fold as their originals, so they neither help nor hurt.
    rng = np.random.default_rng(15)
    real = rng.normal(size=(400, 6))
    fake = np.concatenate([real[:200], rng.normal(size=(200, 6))])
    assert detection(real, fake)["auc"] == pytest.approx(0.5, abs=0.08)  # unpaired: 0.22


@pytest.mark.parametrize("model", ["hgb", "logistic"])
def test_detection_sees_a_shift(model):
    rng = np.random.default_rng(16)
    real, fake = rng.normal(size=(300, 6)), rng.normal(1.5, 1, size=(500, 6))
    out = detection(real, fake, model=model, seed=3)
    assert out["auc"] > 0.95 and out["accuracy"] > 0.85
    assert detection(real, fake, model=model, seed=3) == out


def test_detection_works_on_discrete_data_with_repeated_rows():
    rng = np.random.default_rng(17)
    real = rng.integers(0, 2, size=(400, 3)).astype(float)
    skewed = (rng.random((400, 3)) < 0.1).astype(float)
    assert detection(real, skewed)["auc"] > 0.8


# --- the floor and bad inputs --------------------------------------------------------------------


def test_floor_applies_the_measure_to_two_disjoint_halves():
    real = np.arange(20.0)[:, None]
    halves = baseline.floor(lambda a, b: (a, b), real, 8, seed=1)
    assert [len(h) for h in halves] == [8, 8]
    assert not set(halves[0].ravel()) & set(halves[1].ravel())
    names = baseline.floor(lambda a, b: a + b, list("abcdef"), 3)
    assert sorted(names) == list("abcdef")
    with pytest.raises(UsageError, match="2 x n <= 20"):
        baseline.floor(frechet_distance, real, 11)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))), r"same shape.*\(5, 3\)"),
    (lambda: frechet_distance(np.zeros((0, 3)), np.zeros((5, 3))), "at least 2 row"),
    (lambda: frechet_distance(np.zeros(5), np.zeros(5)), r"2-D array \[N, d\]"),
    (lambda: prdc(np.zeros((3, 2)), np.zeros((9, 2)), k=5), "real needs at least 6 row"),
    (lambda: kid(np.zeros((5, 2)), np.full((5, 2), np.nan)), "b contains NaN"),
    (lambda: privacy(np.zeros((5, 2)), np.zeros((5, 2)), np.zeros((5, 3))), "holdout and train"),
    (lambda: exact_copy_rate(np.zeros((5, 2)), np.zeros((5, 3))), "same shape"),
    (lambda: exact_copy_rate("abc", ["abc"]), "list of strings"),
    (lambda: exact_copy_rate([{"a": 1}], [[1.0]]), "numeric records or a list of strings"),
    (lambda: detection(np.zeros((9, 2)), np.zeros((9, 2)), model="svm"), "unknown detection"),
    (lambda: detection(np.full((9, 2), np.nan), np.zeros((9, 2)), model="logistic"), "NaN"),
])
def test_bad_inputs_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call()
