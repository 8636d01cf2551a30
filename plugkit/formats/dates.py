"""Dates and times in tables: numbers while a family trains, dates again in its samples.

A date column would otherwise be text to every family: a category with a value per row, whose
samples can only copy the training dates. Instead each one becomes a number when the table is
checked (plugkit.data.dataset.validate): days since 1970-01-01 when every value falls on a
midnight, else seconds. meta["dates"] records which columns were dates and their dtype, and
codec.decode turns the sampled numbers back into them (rounded to whole days or seconds, as
the data's precision is: tabular._decimals). Which CSV columns are dates is the reader's to
say (plugkit.data.readers).
"""

from __future__ import annotations

from typing import Any

_SECONDS = {"D": 86400.0, "s": 1.0}


def to_numbers(df: Any) -> tuple[Any, dict]:
    """(df with its datetime columns as float days or seconds since 1970, meta["dates"])."""
    import pandas as pd

    spec = {}
    for name in df.columns:
        column = df[name]
        if not pd.api.types.is_datetime64_any_dtype(column):
            continue
        utc = column.dt.tz_convert("UTC").dt.tz_localize(None) if column.dt.tz else column
        ns = utc.astype("datetime64[ns]").to_numpy().astype("int64").astype("float64")
        ns[utc.isna().to_numpy()] = float("nan")
        present = utc.dropna()
        unit = "D" if (present == present.dt.normalize()).all() else "s"
        df = df.assign(**{name: ns / 1e9 / _SECONDS[unit]})
        spec[str(name)] = {"dtype": str(column.dtype), "unit": unit}
    return df, spec


def restore(df: Any, spec: dict) -> Any:
    """Sampled numbers back into the date columns meta["dates"] names, in their dtypes."""
    import pandas as pd

    for name, column in spec.items():
        seconds = df[name].astype("float64") * _SECONDS[column["unit"]]
        dtype = pd.api.types.pandas_dtype(column["dtype"])
        tz = getattr(dtype, "tz", None)
        dates = pd.to_datetime(seconds.round(), unit="s", utc=tz is not None)
        df[name] = dates.dt.tz_convert(tz) if tz is not None else dates.astype(dtype)
    return df
