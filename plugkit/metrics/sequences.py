"""Synthetic real-valued sequences against real ones: float arrays [N, T, F] (N sequences of
T steps with F features)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.neighbors import NearestNeighbors

from plugkit.errors import UsageError
from plugkit.metrics.detection import detection
from plugkit.metrics.univariate import ks_statistic


def marginal_distance(real: object, synthetic: object) -> dict:
    """KS statistic between all values of each feature, pooled over sequences and steps.
    Returns {"ks_mean", "ks_per_feature"}; in [0, 1], 0 = the same value distribution."""
    real, synthetic = _pair(real, synthetic, ("real", "synthetic"), min_steps=1)
    per_feature = [ks_statistic(real[..., f], synthetic[..., f]) for f in range(real.shape[2])]
    return {"ks_mean": float(np.mean(per_feature)), "ks_per_feature": per_feature}


def autocorrelation(x: object, max_lag: int) -> np.ndarray:
    """Mean autocorrelation function over sequences, lags 1..max_lag, one column per feature:
    [max_lag, F]. Each sequence is centered on its own mean and scaled by its own variance;
    constant sequences, which have no autocorrelation, are left out of the mean."""
    if max_lag < 1:
        raise UsageError(f"max_lag must be >= 1; got {max_lag}")
    x = _sequences(x, "x", min_steps=max_lag + 1)
    varying = np.maximum((np.ptp(x, axis=1) > 0).sum(0), 1)  # per feature
    return np.stack([_sequence_acf(x, lag).sum(0) for lag in range(1, max_lag + 1)]) / varying


def autocorrelation_distance(real: object, synthetic: object, *,
                             max_lag: int | None = None) -> dict:
    """Mean absolute difference between the mean autocorrelation functions of real and
    synthetic sequences, over lags 1..max_lag and features. In [0, 2]; 0 = the same temporal
    structure. max_lag defaults to a quarter of the shorter length (Box & Jenkins: the ACF
    beyond T/4 rests on too few pairs). Returns {"acf_distance", "max_lag"}."""
    real, synthetic = _pair(real, synthetic, ("real", "synthetic"), min_steps=2)
    steps = min(real.shape[1], synthetic.shape[1])
    lag = max(1, steps // 4) if max_lag is None else max_lag
    if not 1 <= lag < steps:
        raise UsageError(f"max_lag must be between 1 and {steps - 1}; got {lag}")
    diff = np.abs(autocorrelation(real, lag) - autocorrelation(synthetic, lag))
    return {"acf_distance": float(diff.mean()), "max_lag": lag}


def sequence_detection(real: object, synthetic: object, *, seed: int = 0,
                       starts: np.ndarray | None = None) -> dict:
    """Detection (plugkit.metrics.detection, HistGradientBoostingClassifier) on each whole
    sequence flattened, next to per-feature summaries that trees find hard to build from raw
    steps: mean, std, min, max, lag-1 autocorrelation, mean absolute step. Both sets need the
    same T. Returns {"accuracy", "auc"}; 0.5 = indistinguishable.

    starts: when the real sequences are windows of one series, where each starts in it. The
    folds are then spans of time (see detection's `times`), and a synthetic window counts as
    starting where its nearest real window does, so it is tested with the real windows of its
    own period, as a real window of that period would be."""
    real, synthetic = _pair(real, synthetic, ("real", "synthetic"), min_steps=2)
    if real.shape[1] != synthetic.shape[1]:
        raise UsageError(f"detection needs sequences of one length; got {real.shape[1]} "
                         f"and {synthetic.shape[1]} steps")
    times = None if starts is None else (starts, starts[_nearest(real, synthetic)])
    return detection(_detection_features(real), _detection_features(synthetic), seed=seed,
                     times=times, span=real.shape[1])


def _nearest(real: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each sequence of `other`, the index of the nearest real one (Euclidean, each
    feature in units of its real std)."""
    std = real.std(axis=(0, 1))
    scale = np.where(std > 0, std, 1.0)
    flat = [(x / scale).reshape(len(x), -1) for x in (real, other)]
    return NearestNeighbors(n_neighbors=1).fit(flat[0]).kneighbors(flat[1])[1][:, 0]


def tstr_forecast(synthetic: object, train_real: object, test_real: object, *, lags: int = 5,
                  alpha: float = 1.0) -> dict:
    """Train on synthetic, test on real (Esteban et al. 2017, see tables.tstr) for one-step-ahead
    forecasting: a ridge regression (sklearn Ridge, `alpha`) predicting x[t] from
    x[t-lags..t-1], fitted once on `synthetic` and once on `train_real`, both scored by MSE on
    every step of `test_real`. Returns {"mse_synthetic", "mse_real", "ratio"}: ratio =
    mse_synthetic / mse_real, 1 = synthetic data teaches the forecaster as well as real data,
    above 1 = worse (nan if mse_real is 0)."""
    if lags < 1:
        raise UsageError(f"lags must be >= 1; got {lags}")
    synthetic, train_real = _pair(synthetic, train_real, ("synthetic", "train_real"),
                                  min_steps=lags + 1)
    test_real, _ = _pair(test_real, train_real, ("test_real", "train_real"), min_steps=lags + 1)
    x_test, y_test = _lagged(test_real, lags)
    mse = [float(mean_squared_error(y_test, Ridge(alpha=alpha).fit(*_lagged(data, lags))
                                    .predict(x_test))) for data in (synthetic, train_real)]
    return {"mse_synthetic": mse[0], "mse_real": mse[1],
            "ratio": mse[0] / mse[1] if mse[1] > 0 else float("nan")}


def _lagged(x: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (previous `lags` steps, next step) pair of every sequence: [M, lags F], [M, F]."""
    windows = sliding_window_view(x, lags + 1, axis=1)  # [N, T - lags, F, lags + 1]
    inputs = windows[..., :lags].reshape(-1, x.shape[2] * lags)
    return inputs, windows[..., lags].reshape(-1, x.shape[2])


def _detection_features(x: np.ndarray) -> np.ndarray:
    summaries = [x.mean(1), x.std(1), x.min(1), x.max(1), _sequence_acf(x, 1),
                 np.abs(np.diff(x, axis=1)).mean(1)]
    return np.concatenate([x.reshape(len(x), -1), *summaries], axis=1)


def _sequence_acf(x: np.ndarray, lag: int) -> np.ndarray:
    """Autocorrelation at `lag` of each sequence and feature, [N, F]; 0 for a constant one."""
    centered = x - x.mean(1, keepdims=True)
    power = (centered**2).sum(1)
    products = (centered[:, :-lag] * centered[:, lag:]).sum(1)
    return np.divide(products, power, out=np.zeros_like(power), where=power > 0)


def _pair(a: object, b: object, names: tuple[str, str], *,
          min_steps: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _sequences(a, names[0], min_steps), _sequences(b, names[1], min_steps)
    if a.shape[2] != b.shape[2]:
        raise UsageError(f"{names[0]} and {names[1]} must have the same number of features; "
                         f"got {a.shape[2]} and {b.shape[2]}")
    return a, b


def _sequences(x: object, name: str, min_steps: int) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{name} must be a numeric array [N, T, F]: {err}") from None
    if arr.ndim != 3:
        raise UsageError(f"{name} must be a 3-D array [N, T, F]; got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < min_steps or arr.shape[2] < 1:
        raise UsageError(f"{name} needs at least 1 sequence of {min_steps} step(s) and 1 feature;"
                         f" got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UsageError(f"{name} contains NaN or infinite values")
    return arr
