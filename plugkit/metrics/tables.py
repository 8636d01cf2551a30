"""Synthetic tables against real ones: pandas DataFrames with the same columns, numeric and
categorical, missing values allowed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, r2_score

from plugkit.errors import UsageError
from plugkit.metrics.associations import association_matrix
from plugkit.metrics.detection import detection, leaf_size
from plugkit.metrics.univariate import ks_statistic, total_variation

MAX_CATEGORIES = 255  # HistGradientBoosting's limit for a categorical feature (max_bins)


def column_kinds(df: pd.DataFrame) -> dict[str, str]:
    """"numeric" for numeric dtypes other than bool, "categorical" for everything else."""
    return {name: "numeric" if pd.api.types.is_numeric_dtype(dtype)
            and not pd.api.types.is_bool_dtype(dtype) else "categorical"
            for name, dtype in df.dtypes.items()}


def column_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    """Per column: KS statistic of the non-missing values (numeric) or total variation distance
    with missing as a category (categorical), and the synthetic minus the real missing rate.
    Returns {"columns": {name: {"kind", "ks" | "tv", "missing_rate_diff"}}, "ks_mean",
    "tv_mean"} (a mean is nan when no column has that kind)."""
    synthetic, kinds = _aligned(real, synthetic)
    columns = {}
    for name, kind in kinds.items():
        r, s = real[name], synthetic[name]
        if kind == "numeric":
            columns[name] = {"kind": kind, "ks": ks_statistic(_floats(r), _floats(s))}
        else:
            columns[name] = {"kind": kind, "tv": total_variation(r, s)}
        columns[name]["missing_rate_diff"] = float(s.isna().mean() - r.isna().mean())
    return {"columns": columns,
            "ks_mean": _mean([c["ks"] for c in columns.values() if "ks" in c]),
            "tv_mean": _mean([c["tv"] for c in columns.values() if "tv" in c])}


def association_difference(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    """Mean and largest absolute difference between the real and synthetic association matrices
    (Pearson, Cramér's V, correlation ratio: plugkit.metrics.associations) over column pairs.
    Returns {"mean_abs_diff", "max_abs_diff", "worst_pair"}; 0 = the same associations."""
    synthetic, kinds = _aligned(real, synthetic)
    if len(kinds) < 2:
        return {"mean_abs_diff": float("nan"), "max_abs_diff": float("nan"), "worst_pair": None}
    diff = (association_matrix(real, kinds) - association_matrix(synthetic, kinds)).abs()
    upper = np.triu_indices(len(kinds), k=1)
    values = diff.to_numpy()[upper]
    worst = int(values.argmax())
    return {"mean_abs_diff": float(values.mean()), "max_abs_diff": float(values[worst]),
            "worst_pair": [str(diff.index[upper[0][worst]]), str(diff.index[upper[1][worst]])]}


def table_detection(real: pd.DataFrame, synthetic: pd.DataFrame, *, seed: int = 0) -> dict:
    """Detection (plugkit.metrics.detection, HistGradientBoostingClassifier) on the encoded
    tables: numeric columns as they are, missing values kept; categoricals as category codes.
    Returns {"accuracy", "auc"}; 0.5 = indistinguishable."""
    synthetic, kinds = _aligned(real, synthetic)
    (x_real, x_syn), categorical = _encode([real, synthetic], kinds)
    return detection(x_real, x_syn, model="hgb", seed=seed, categorical=categorical)


def tstr(synthetic: pd.DataFrame, train_real: pd.DataFrame, test_real: pd.DataFrame,
         target: str, *, seed: int = 0) -> dict:
    """Train on synthetic, test on real (Esteban et al. 2017, "Real-valued (Medical) Time Series
    Generation with Recurrent Conditional GANs"): a HistGradientBoosting model predicting
    `target` from the other columns, fitted once on `synthetic` and once on `train_real`, both
    scored on `test_real` (accuracy for a categorical target, R^2 for a numeric one). Rows with
    a missing target are left out. Returns {"task", "metric", "synthetic", "real", "ratio"}:
    ratio = synthetic / real score, 1 = as useful as real data (nan if the real score <= 0)."""
    synthetic, kinds = _aligned(train_real, synthetic)
    test_real, _ = _aligned(train_real, test_real, name="test_real")
    if target not in kinds:
        raise UsageError(f"target column {target!r} is not in the tables; "
                         f"columns: {', '.join(map(str, kinds))}")
    frames = [f[f[target].notna()] for f in (synthetic, train_real, test_real)]
    if any(len(f) == 0 for f in frames):
        raise UsageError(f"every table needs rows with a value in the target column {target!r}")
    features = {name: kind for name, kind in kinds.items() if name != target}
    if not features:
        raise UsageError("tstr needs at least one column besides the target")
    xs, categorical = _encode(frames, features)
    classify = kinds[target] == "categorical"
    if classify:  # one code per class across all three tables
        labels, _ = pd.factorize(pd.concat([f[target] for f in frames], ignore_index=True))
        ys = np.split(labels, np.cumsum([len(f) for f in frames])[:-1])
    else:
        ys = [_floats(f[target]) for f in frames]
    scores = [_score(ys[2], _fit_predict(x, y, xs[2], classify, categorical, seed), classify)
              for x, y in zip(xs[:2], ys[:2], strict=True)]
    return {"task": "classification" if classify else "regression",
            "metric": "accuracy" if classify else "r2",
            "synthetic": scores[0], "real": scores[1],
            "ratio": scores[0] / scores[1] if scores[1] > 0 else float("nan")}


def tstr_cv(synthetic: pd.DataFrame, real: pd.DataFrame, target: str, *, folds: int = 5,
            repeats: int = 5, seed: int = 0) -> dict:
    """Train on synthetic, test on real, every real row tested: k-fold cross-validation over
    `real` (stratified by a categorical target when every class has `folds` rows). In each
    fold, one model fitted on the other folds' real rows (the floor) and one fitted on as many
    synthetic rows (a random subset; both cut to the synthetic count when it is smaller) are
    scored on the fold; a repeat's score is that of every real row's out-of-fold prediction.
    Repeated with new folds and new subsets, for small data where one held-out set would be a
    few dozen rows. Returns tstr's keys plus "synthetic_std" and "real_std" (standard
    deviation over the repeats; None for one repeat) and "train_rows" (rows per fitted model).

    When the synthetic data came from a model trained on `real`, its classifier is tested on
    rows the generator saw (not the classifier): a generator that copies them scores above the
    floor; the privacy measures tell."""
    synthetic, kinds = _aligned(real, synthetic)
    if target not in kinds:
        raise UsageError(f"target column {target!r} is not in the tables; "
                         f"columns: {', '.join(map(str, kinds))}")
    frames = [f[f[target].notna()].reset_index(drop=True) for f in (synthetic, real)]
    if len(frames[0]) == 0 or len(frames[1]) < 2:
        raise UsageError(f"train-on-synthetic needs rows with a value in the target column "
                         f"{target!r}: one synthetic, two real at least")
    features = {name: kind for name, kind in kinds.items() if name != target}
    if not features:
        raise UsageError("tstr needs at least one column besides the target")
    (x_syn, x_real), categorical = _encode(frames, features)
    classify = kinds[target] == "categorical"
    if classify:
        labels, _ = pd.factorize(pd.concat([f[target] for f in frames], ignore_index=True))
        y_syn, y_real = labels[:len(frames[0])], labels[len(frames[0]):]
    else:
        y_syn, y_real = _floats(frames[0][target]), _floats(frames[1][target])
    k = min(folds, len(y_real))
    scores: dict[str, list[float]] = {"synthetic": [], "real": []}
    rows = 0
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        predicted = {"synthetic": np.empty(len(y_real)), "real": np.empty(len(y_real))}
        for fit_rows, test in _folds(y_real, k, classify, rng):
            rows = min(len(fit_rows), len(y_syn))
            fits = {"real": (x_real, y_real, _some(fit_rows, rows, rng)),
                    "synthetic": (x_syn, y_syn, _some(np.arange(len(y_syn)), rows, rng))}
            for name, (x, y, pick) in fits.items():
                predicted[name][test] = _fit_predict(x[pick], y[pick], x_real[test], classify,
                                                     categorical, seed)
        for name in scores:
            scores[name].append(_score(y_real, predicted[name], classify))
    syn, rl = float(np.mean(scores["synthetic"])), float(np.mean(scores["real"]))
    spread = {name: float(np.std(v, ddof=1)) if repeats > 1 else None
              for name, v in scores.items()}
    return {"task": "classification" if classify else "regression",
            "metric": "accuracy" if classify else "r2", "synthetic": syn, "real": rl,
            "ratio": syn / rl if rl > 0 else float("nan"),
            "synthetic_std": spread["synthetic"], "real_std": spread["real"],
            "train_rows": rows, "folds": k, "repeats": repeats}


def _folds(y: np.ndarray, k: int, classify: bool, rng: np.random.Generator):
    """(fit rows, test rows) of k shuffled folds; stratified when every class has k rows."""
    from sklearn.model_selection import KFold, StratifiedKFold

    state = int(rng.integers(2**31))
    stratify = classify and np.bincount(y).min() >= k
    splitter = (StratifiedKFold if stratify else KFold)(k, shuffle=True, random_state=state)
    return splitter.split(np.zeros((len(y), 1)), y)


def _some(rows: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) == m else np.sort(rng.choice(rows, m, replace=False))


def _fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, classify: bool,
                 categorical: np.ndarray | None, seed: int) -> np.ndarray:
    if classify and len(np.unique(y)) == 1:
        # One class to learn from: the model can only ever predict it.
        return np.full(len(x_test), y[0])
    model_type = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    model = model_type(categorical_features=categorical, random_state=seed,
                       min_samples_leaf=leaf_size(len(x))).fit(x, y)
    return model.predict(x_test)


def _score(y: np.ndarray, predicted: np.ndarray, classify: bool) -> float:
    return float(accuracy_score(y, predicted) if classify else r2_score(y, predicted))


def _aligned(real: pd.DataFrame, other: pd.DataFrame,
             name: str = "synthetic") -> tuple[pd.DataFrame, dict[str, str]]:
    """`other` with the columns in real's order, and the column kinds; checks both tables."""
    for df, label in ((real, "real"), (other, name)):
        if not isinstance(df, pd.DataFrame):
            raise UsageError(f"the {label} table must be a pandas DataFrame; "
                             f"got {type(df).__name__}")
        if df.empty:
            raise UsageError(f"the {label} table is empty")
    missing = [c for c in real.columns if c not in other.columns]
    extra = [c for c in other.columns if c not in real.columns]
    if missing or extra:
        raise UsageError(f"the {name} table's columns differ from the real table's: "
                         f"missing {missing}, extra {extra}")
    other = other[list(real.columns)]
    kinds, other_kinds = column_kinds(real), column_kinds(other)
    clash = [c for c in kinds if kinds[c] != other_kinds[c]]
    if clash:
        raise UsageError(f"column {clash[0]!r} is {kinds[clash[0]]} in the real table but "
                         f"{other_kinds[clash[0]]} in the {name} one")
    return other, kinds


def _encode(frames: list[pd.DataFrame],
            kinds: dict[str, str]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Float arrays for HistGradientBoosting, one per frame, and the mask of category-code
    columns. Codes come from all frames together so that a category means the same everywhere;
    missing stays NaN. A column with more categories than HGB takes stays as plain codes."""
    sizes = np.cumsum([0] + [len(f) for f in frames])
    columns, categorical = [], []
    for name, kind in kinds.items():
        values = pd.concat([f[name] for f in frames], ignore_index=True)
        if kind == "numeric":
            columns.append(_floats(values))
            categorical.append(False)
            continue
        codes, uniques = pd.factorize(values)
        columns.append(np.where(codes < 0, np.nan, codes))
        categorical.append(len(uniques) <= MAX_CATEGORIES)
    x = np.column_stack(columns)
    mask = np.array(categorical)
    return [x[a:b] for a, b in zip(sizes[:-1], sizes[1:], strict=True)], \
        mask if mask.any() else None


def _floats(s: pd.Series) -> np.ndarray:
    return s.to_numpy(np.float64, na_value=np.nan)  # nullable dtypes (Int64) hold pd.NA


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
