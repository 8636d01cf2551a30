"""Date columns in tables (plugkit.formats.dates): numbers while training, dates in the samples."""

import numpy as np
import pandas as pd
import pytest

import plugkit
from plugkit.data import load
from plugkit.family import DataInfo
from plugkit.formats import codec


def table(n=120):
    rng = np.random.default_rng(0)
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    stamp = pd.Timestamp("2024-01-01 08:00") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")
    df = pd.DataFrame({"day": day, "stamp": stamp, "amount": rng.normal(100, 10, n).round(2),
                       "city": rng.choice(["Oslo", "Rome"], n)})
    df["utc"] = df["stamp"].dt.tz_localize("Europe/Oslo")
    df.loc[3, "day"] = pd.NaT
    return df


def test_dates_train_as_numbers_and_decode_to_the_same_dates():
    df = table()
    ds = load(df)
    assert ds.meta["dates"] == {"day": {"dtype": str(df["day"].dtype), "unit": "D"},
                                "stamp": {"dtype": str(df["stamp"].dtype), "unit": "s"},
                                "utc": {"dtype": str(df["utc"].dtype), "unit": "s"}}
    assert ds.meta["columns"]["day"] == "numeric" and ds.x["day"].iloc[0] == (
        df["day"].iloc[0] - pd.Timestamp("1970-01-01")).days
    encoded, _ = codec.encode(ds)
    back = codec.decode(DataInfo("table", ds.meta), encoded)
    for name in ("day", "stamp", "utc"):
        assert back[name].dtype == df[name].dtype
        pd.testing.assert_series_equal(back[name], df[name], check_exact=True)


def test_a_csv_reads_iso_dates_as_dates_and_other_layouts_as_text(tmp_path):
    (tmp_path / "d.csv").write_text("when,at,local,bad,n\n2024-03-01,2024-03-01 12:30:00,"
                                    "01/03/2024,2024-13-45,1\n2024-03-02,2024-03-02T08:00:05,"
                                    "02/03/2024,2024-01-01,2\n,,,,3\n")
    ds = load(str(tmp_path / "d.csv"))
    assert set(ds.meta["dates"]) == {"when", "at"}
    assert ds.meta["columns"]["local"] == "categorical" == ds.meta["columns"]["bad"]


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_samples_of_a_table_with_dates_are_dates_in_the_data_s_range(tmp_path, family):
    df = table()
    model = plugkit.train(family, data=df, epochs=2, threads=1, out=tmp_path / "run",
                          options={"hidden": 32})
    samples = model.sample(200)
    assert samples["day"].dtype == df["day"].dtype and samples["utc"].dtype == df["utc"].dtype
    days = samples["day"].dropna()
    assert (days == days.dt.normalize()).all()  # whole days, as the data's
    assert days.min() >= df["day"].min() and days.max() <= df["day"].max()
    samples.to_csv(tmp_path / "s.csv", index=False)
    df.to_csv(tmp_path / "real.csv", index=False)  # both files read back as dates
    report = plugkit.evaluate(tmp_path / "s.csv", against=str(tmp_path / "real.csv"))
    assert {c["name"]: c["measure"] for c in report.details["columns"]}["day"] == "KS"


def test_windows_leave_out_the_date_column_of_a_series(tmp_path):
    dates = pd.date_range("2023-01-01", periods=60).strftime("%Y-%m-%d")
    pd.DataFrame({"date": dates, "close": np.linspace(20, 30, 60)}).to_csv(
        tmp_path / "p.csv", index=False)
    ds = load(str(tmp_path / "p.csv"), window=10)
    assert ds.x.shape == (51, 10, 1)
    np.testing.assert_allclose(ds.x[0, :, 0], np.linspace(20, 30, 60)[:10], rtol=1e-6)
