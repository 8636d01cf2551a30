"""Dates and times in tables: numbers while a family trains, dates again in its samples.

A date column would otherwise be text to every family: a category with a value per row, whose
samples can only copy the training dates. Instead each one becomes a number when the table is
checked (dataset.validate): days since 1970-01-01 when every value falls on a midnight, else
seconds. meta["dates"] records which columns were dates and their dtype, and codec.decode
turns the sampled numbers back into them (rounded to whole days or seconds, as the data's
precision is: tabular._decimals). A CSV's text column is read as dates when every value is an
ISO 8601 date or date-time (2024-03-01, 2024-03-01 12:30:00): other layouts (01/03/2024) are
ambiguous between countries and stay text.
"""

from __future__ import annotations

from typing import Any

_ISO = r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
_SECONDS = {"D": 86400.0, "s": 1.0}


def parse_text(df: Any) -> Any:
    """df with each text column whose every value is an ISO 8601 date read as datetimes."""
    import pandas as pd

    for name in df.columns:
        column = df[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
            continue
        values = column.dropna()
        if not len(values) or not values.map(lambda v: isinstance(v, str)).all():
            continue
        if values.str.fullmatch(_ISO).all():
            df[name] = _parsed(pd, column)
    return df


def _parsed(pd, column: Any) -> Any:
    """ISO 8601 text as datetimes; offsets that differ (summer time) as UTC; the text itself
    where a value is no date (2024-13-45)."""
    for utc in (False, True):
        try:
            return pd.to_datetime(column, format="ISO8601", utc=utc)
        except (ValueError, TypeError):
            continue
    return column


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
        unit = "D" if (utc.dropna() == utc.dropna().dt.normalize()).all() else "s"
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
