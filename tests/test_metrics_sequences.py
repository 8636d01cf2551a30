"""Known answers for the sequence measures on sines, white noise and AR(1) processes."""

import numpy as np
import pytest
import scipy.stats
from scipy.signal import lfilter

from plugkit.errors import UsageError
from plugkit.metrics.sequences import (
    autocorrelation,
    autocorrelation_distance,
    marginal_distance,
    sequence_detection,
    tstr_forecast,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def sines(rng, n, steps, period=16.0):
    """Sines of one period and random phases: [n, steps, 1]."""
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    return np.sin(2 * np.pi * np.arange(steps)[None, :, None] / period + phase)


def ar1(rng, n, steps, phi, features=1):
    """x[t] = phi x[t-1] + e[t], e ~ N(0, 1), started in the stationary state."""
    noise = rng.normal(size=(n, steps + 200, features))
    return lfilter([1.0], [1.0, -phi], noise, axis=1)[:, 200:]


def test_marginal_distance_matches_scipy_per_feature():
    rng = np.random.default_rng(0)
    real, synthetic = rng.normal(size=(30, 10, 2)), rng.normal(size=(20, 7, 2))
    synthetic[..., 1] += 0.5
    out = marginal_distance(real, synthetic)
    expected = [scipy.stats.ks_2samp(real[..., f].ravel(), synthetic[..., f].ravel()).statistic
                for f in range(2)]
    assert out["ks_per_feature"] == pytest.approx(expected)
    assert out["ks_mean"] == pytest.approx(np.mean(expected))
    assert marginal_distance(real, real + 10)["ks_mean"] == 1.0  # no value ranges overlap


def test_autocorrelation_of_a_sine_is_a_cosine():
    # Sample ACF of a sine over whole periods: (1 - k/T) cos(2 pi k / period).
    x = sines(np.random.default_rng(1), 50, steps=64, period=16)
    lags = np.arange(1, 9)
    expected = (1 - lags / 64) * np.cos(2 * np.pi * lags / 16)
    np.testing.assert_allclose(autocorrelation(x, 8)[:, 0], expected, atol=0.01)


def test_autocorrelation_of_ar1_decays_geometrically_and_of_noise_vanishes():
    rng = np.random.default_rng(2)
    # Centering on each sequence's own mean biases the ACF down by ~(1 + phi) / ((1 - phi) T):
    # 0.009 at T = 1000.
    acf = autocorrelation(ar1(rng, 100, 1000, phi=0.8), 3)[:, 0]
    np.testing.assert_allclose(acf, 0.8 ** np.arange(1, 4), atol=0.02)
    noise = autocorrelation(rng.normal(size=(400, 200, 2)), 3)
    np.testing.assert_allclose(noise, 0, atol=0.02)


def test_constant_sequences_are_left_out_of_the_mean_acf():
    x = sines(np.random.default_rng(3), 10, steps=32)
    with_constants = np.concatenate([x, np.full((10, 32, 1), 5.0)])
    np.testing.assert_allclose(autocorrelation(with_constants, 4), autocorrelation(x, 4))


def test_autocorrelation_distance_tells_a_sine_from_noise():
    rng = np.random.default_rng(4)
    real = sines(rng, 100, steps=64)
    same = autocorrelation_distance(real, sines(rng, 100, steps=64))
    noise = autocorrelation_distance(real, rng.normal(size=(100, 64, 1)))
    assert same["max_lag"] == noise["max_lag"] == 16
    assert same["acf_distance"] < 0.01
    # Against noise (ACF ~ 0) the distance is the mean |ACF| of the sine over lags 1..16.
    lags = np.arange(1, 17)
    expected = np.abs((1 - lags / 64) * np.cos(2 * np.pi * lags / 16)).mean()
    assert noise["acf_distance"] == pytest.approx(expected, abs=0.02)


def test_detection_of_sequences():
    rng = np.random.default_rng(5)
    real = sines(rng, 150, steps=32)
    assert sequence_detection(real, real.copy()) == {"accuracy": 0.5, "auc": 0.5}
    noise = rng.normal(0, np.sqrt(0.5), size=(150, 32, 1))  # same mean and variance as a sine
    assert sequence_detection(real, noise)["auc"] > 0.95


def windows_of_a_trend(rng, steps=1300, length=52):
    """Every window of one series like co2's (a trend, a season, weekly jitter, recorded to
    0.1), [N, length, 1], each window's start."""
    t = np.arange(steps)
    series = 0.03 * t + 3 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 0.3, steps)
    view = np.lib.stride_tricks.sliding_window_view(np.round(series, 1), length)
    return view[:, :, None].astype(np.float64), np.arange(len(view))


def test_detection_of_windows_of_one_series_does_not_score_by_shared_values():
    rng = np.random.default_rng(7)
    windows, starts = windows_of_a_trend(rng)
    order = rng.permutation(len(windows))
    a, b = np.sort(order[:500]), np.sort(order[500:1000])
    shifted = windows[b] + 0.02  # a fifth of the recorded precision: no one could tell
    # shuffled folds recognize a real window by the values its overlapping neighbours share
    assert sequence_detection(windows[a], shifted)["accuracy"] > 0.8
    assert sequence_detection(windows[a], shifted, starts=starts[a])["accuracy"] < 0.6
    assert sequence_detection(windows[a], windows[b], starts=starts[a])["accuracy"] < 0.6
    smooth = windows[b] - np.diff(windows[b], axis=1, prepend=windows[b][:, :1]) / 2
    assert sequence_detection(windows[a], smooth, starts=starts[a])["accuracy"] > 0.8


def test_tstr_forecast_of_real_data_as_the_synthetic_set_is_a_ratio_of_one():
    rng = np.random.default_rng(6)
    train, test = ar1(rng, 100, 40, phi=0.9), ar1(rng, 100, 40, phi=0.9)
    assert tstr_forecast(train.copy(), train, test)["ratio"] == 1.0


def test_tstr_forecast_known_mses_for_ar1():
    # The best one-step forecast of AR(1) leaves the innovation variance, 1. A forecaster fitted
    # on white noise of the same marginal variance learns to predict ~0 and is left with that
    # variance, 1 / (1 - phi^2): the ratio is 1 / (1 - phi^2) too.
    rng = np.random.default_rng(7)
    phi = 0.9
    train, test, fresh = (ar1(rng, 200, 50, phi, features=2) for _ in range(3))
    good = tstr_forecast(fresh, train, test, lags=3)
    assert good["mse_real"] == pytest.approx(1, rel=0.05)
    assert good["ratio"] == pytest.approx(1, abs=0.02)
    noise = rng.normal(0, np.sqrt(1 / (1 - phi**2)), size=(200, 50, 2))
    bad = tstr_forecast(noise, train, test, lags=3)
    assert bad["ratio"] == pytest.approx(1 / (1 - phi**2), rel=0.15)


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: marginal_distance(x[..., 0], x), r"3-D array \[N, T, F\]; got shape \(4, 6\)"),
    (lambda x: marginal_distance(x, np.zeros((4, 6, 2))), "same number of features; got 1 and 2"),
    (lambda x: marginal_distance(x, x[:0]), "at least 1 sequence"),
    (lambda x: autocorrelation_distance(x, x, max_lag=6), "max_lag must be between 1 and 5"),
    (lambda x: autocorrelation(x, 0), "max_lag must be >= 1"),
    (lambda x: sequence_detection(x, x[:, :5]), "one length; got 6 and 5"),
    (lambda x: tstr_forecast(x, x, x, lags=6), "synthetic needs at least 1 sequence of 7 step"),
    (lambda x: tstr_forecast(x, x, np.full_like(x, np.nan)), "test_real contains NaN"),
])
def test_bad_sequences_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call(np.random.default_rng(8).normal(size=(4, 6, 1)))
