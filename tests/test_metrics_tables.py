"""Known answers for the table measures: per-column distances, associations, detection, TSTR."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from plugkit.errors import UsageError
from plugkit.metrics.associations import association_matrix, correlation_ratio, cramers_v
from plugkit.metrics.tables import (
    association_difference,
    column_fidelity,
    column_kinds,
    table_detection,
    tstr,
)
from plugkit.metrics.univariate import ks_statistic, total_variation

pytestmark = pytest.mark.usefixtures("one_thread")


def people(rng, n, *, age_shift=0.0):
    """A mixed table: income follows age and city; membership follows income; age has gaps."""
    age = rng.normal(40 + age_shift, 10, n)
    city = rng.choice(["oslo", "rome", "lima"], n, p=[0.5, 0.3, 0.2])
    income = age * 1000 + (city == "oslo") * 20000 + rng.normal(0, 5000, n)
    df = pd.DataFrame({"age": age, "income": income, "city": city, "member": income > 60000})
    df.loc[rng.random(n) < 0.1, "age"] = np.nan
    return df


# --- one column at a time ------------------------------------------------------------------------


def test_column_kinds():
    df = pd.DataFrame({"f": [1.5], "i": [1], "n": pd.array([None], dtype="Int64"), "b": [True],
                       "s": ["x"], "c": pd.Categorical(["x"])})
    assert column_kinds(df) == {"f": "numeric", "i": "numeric", "n": "numeric",
                                "b": "categorical", "s": "categorical", "c": "categorical"}


@pytest.mark.parametrize("seed", range(4))
def test_ks_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rng.integers(5, 80)).round(1)  # rounded: ties, the tricky case
    b = rng.normal(0.4, 1.5, size=rng.integers(5, 80)).round(1)
    assert ks_statistic(a, b) == pytest.approx(scipy.stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_ignores_missing_values():
    assert ks_statistic([1.0, np.nan, 2.0], [1.0, 2.0]) == 0.0
    assert ks_statistic([1.0, 2.0], [3.0, np.nan]) == 1.0
    assert ks_statistic([np.nan], [1.0]) == 1.0 and ks_statistic([np.nan], [np.nan]) == 0.0


def test_a_constructed_table_has_its_known_distances():
    # city: real 50/30/20 % oslo/rome/lima; synthetic 20/30/40 % with 10 % missing:
    # TV = (0.3 + 0 + 0.2 + 0.1) / 2 = 0.3. size: the CDFs differ most at 3, where all 9 real
    # values and 6 of the 10 synthetic ones are <= 3: KS = 1 - 0.6 = 0.4.
    real = pd.DataFrame({"city": ["oslo"] * 5 + ["rome"] * 3 + ["lima"] * 2,
                         "size": [1.0, 2, 3] * 3 + [np.nan]})
    synthetic = pd.DataFrame({"size": [2.0, 3, 4] * 3 + [4],  # columns in another order
                              "city": ["oslo"] * 2 + ["rome"] * 3 + ["lima"] * 4 + [None]})
    out = column_fidelity(real, synthetic)
    assert out["columns"]["city"] == pytest.approx(
        {"kind": "categorical", "tv": 0.3, "missing_rate_diff": 0.1})
    assert out["columns"]["size"] == pytest.approx(
        {"kind": "numeric", "ks": 0.4, "missing_rate_diff": -0.1})
    assert out["ks_mean"] == pytest.approx(0.4) and out["tv_mean"] == pytest.approx(0.3)


def test_total_variation_extremes():
    assert total_variation(["a", "b", "b"], ["b", "a", "b"]) == 0.0
    assert total_variation(["a", "a"], ["b", None]) == 1.0


# --- associations --------------------------------------------------------------------------------


def test_cramers_v_is_one_for_perfectly_associated_columns():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.choice(list("abcd"), 300))
    assert cramers_v(x, x.map({"a": "w", "b": "x", "c": "y", "d": "z"})) == pytest.approx(1.0)
    assert cramers_v(x, x.map({"a": 0, "b": 0, "c": 1, "d": 1})) == pytest.approx(1.0)


def test_cramers_v_matches_scipy_and_is_zero_when_independent():
    rng = np.random.default_rng(1)
    x = pd.Series(rng.integers(0, 3, 500))
    y = pd.Series((x + rng.integers(0, 2, 500)) % 4)
    table = pd.crosstab(x, y).to_numpy()
    assert cramers_v(x, y) == pytest.approx(
        scipy.stats.contingency.association(table, method="cramer"))
    grid = pd.DataFrame([(a, b) for a in "pqr" for b in "st"] * 5)  # every pair equally often
    assert cramers_v(grid[0], grid[1]) == pytest.approx(0, abs=1e-12)


def test_correlation_ratio_on_a_worked_example():
    # Groups a: 1, 3 and b: 5, 7. Between SS = 2 (2-4)^2 + 2 (6-4)^2 = 16, total SS = 20.
    groups, values = pd.Series(list("aabbc")), pd.Series([1.0, 3, 5, 7, np.nan])
    assert correlation_ratio(groups, values) == pytest.approx(np.sqrt(16 / 20))
    assert correlation_ratio(groups, groups.map({"a": 1.0, "b": 2.0, "c": 3.0})) == 1.0


def test_association_difference_of_a_broken_correlation():
    # y = x in the real table; corr(x, y) is exactly 0 in the synthetic one.
    real = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [1.0, 2, 3, 4]})
    synthetic = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [1.0, -1, -1, 1]})
    out = association_difference(real, synthetic)
    assert out["mean_abs_diff"] == out["max_abs_diff"] == pytest.approx(1.0)
    assert out["worst_pair"] == ["x", "y"]


def test_association_difference_finds_the_broken_pair_in_a_mixed_table():
    rng = np.random.default_rng(2)
    real, synthetic = people(rng, 600), people(rng, 600)
    assert association_difference(real, real)["max_abs_diff"] == 0.0
    assert association_difference(real, synthetic)["max_abs_diff"] < 0.1
    synthetic["income"] = rng.permutation(synthetic["income"].to_numpy())
    out = association_difference(real, synthetic)
    assert out["max_abs_diff"] > 0.6 and "income" in out["worst_pair"]


def test_association_matrix_takes_missing_values_and_constant_columns():
    df = pd.DataFrame({"n": pd.array([1, None, 3, 4], dtype="Int64"), "k": [7.0] * 4,
                       "c": ["a", None, "a", "b"]})
    m = association_matrix(df, column_kinds(df))
    assert m.loc["n", "k"] == 0.0 and m.loc["k", "c"] == 0.0 and np.diag(m).tolist() == [1] * 3
    # Rows with n: a 1, a 3, b 4. Between SS = 2 (2 - 8/3)^2 + (4 - 8/3)^2 = 24/9, total 42/9.
    assert m.loc["c", "n"] == pytest.approx(np.sqrt(24 / 42))


# --- detection and TSTR --------------------------------------------------------------------------


def test_detection_of_a_table_against_itself_is_chance():
    real = people(np.random.default_rng(3), 400)
    assert table_detection(real, real.copy()) == {"accuracy": 0.5, "auc": 0.5}


def test_detection_sees_a_shifted_column():
    rng = np.random.default_rng(4)
    real = people(rng, 400)
    assert table_detection(real, people(rng, 400))["auc"] < 0.6
    assert table_detection(real, people(rng, 400, age_shift=20))["auc"] > 0.8


def test_detection_sees_a_category_turned_into_missing_values():
    rng = np.random.default_rng(5)
    real, synthetic = people(rng, 400), people(rng, 400)
    synthetic["city"] = synthetic["city"].where(synthetic["city"] != "lima", None)
    assert table_detection(real, synthetic)["auc"] > 0.6


def test_tstr_with_real_data_as_the_synthetic_set_is_a_ratio_of_one():
    rng = np.random.default_rng(5)
    train, test = people(rng, 500), people(rng, 300)
    out = tstr(train.copy(), train, test, "city")
    assert out["task"] == "classification" and out["metric"] == "accuracy"
    assert out["ratio"] == 1.0 and 0.5 < out["real"] <= 1


def test_tstr_of_a_fresh_sample_is_near_one_and_of_noise_far_below():
    rng = np.random.default_rng(6)
    train, test, fresh = people(rng, 600), people(rng, 300), people(rng, 600)
    good = tstr(fresh, train, test, "income")
    assert good["metric"] == "r2" and good["real"] > 0.7
    assert good["ratio"] == pytest.approx(1, abs=0.1)
    fresh["income"] = rng.permutation(fresh["income"].to_numpy())
    assert tstr(fresh, train, test, "income")["ratio"] < 0.3


def test_tstr_with_a_single_synthetic_class_predicts_that_class():
    rng = np.random.default_rng(7)
    train, test = people(rng, 200), people(rng, 100)
    one_class = train.assign(member=True)
    assert tstr(one_class, train, test, "member")["synthetic"] == test["member"].mean()


@pytest.mark.parametrize(("call", "message"), [
    (lambda t: column_fidelity(t, t.drop(columns="age")), r"missing \['age'\], extra \[\]"),
    (lambda t: column_fidelity(t, t.assign(zip=1)), r"extra \['zip'\]"),
    (lambda t: column_fidelity(t, t.assign(age="old")), "'age' is numeric in the real table"),
    (lambda t: column_fidelity(t, t.iloc[:0]), "synthetic table is empty"),
    (lambda t: table_detection(t.to_numpy(), t), "must be a pandas DataFrame"),
    (lambda t: tstr(t, t, t, "salary"), "target column 'salary' is not in the tables"),
    (lambda t: tstr(t, t, t.drop(columns="city"), "age"), "test_real table's columns"),
    (lambda t: tstr(t[["age"]], t[["age"]], t[["age"]], "age"), "besides the target"),
    (lambda t: tstr(t.assign(age=np.nan), t, t, "age"), "rows with a value in the target"),
])
def test_bad_tables_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call(people(np.random.default_rng(8), 20))
