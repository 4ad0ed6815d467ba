"""Calendar helpers and partition-key parsing, free of Dagster so pure code can use them."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_MONTH_KEY = re.compile(r"^\d{4}-\d{2}-01$")
_DAY_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def add_months(month: date, n: int) -> date:
    """The first day of the month n months after `month`'s month."""
    y, m = divmod(month.year * 12 + month.month - 1 + n, 12)
    return date(y, m + 1, 1)


def month_end(month: date) -> date:
    """Last day of the month."""
    return add_months(month, 1) - timedelta(days=1)


def as_date(value: object) -> date | None:
    """A calendar day from a date, datetime, pandas/numpy timestamp or ISO text (None/NaT/''/bad text -> None).
    DuckDB returns DATE columns as datetime64 through pandas, and MLflow tags are text."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    import pandas as pd  # only for numpy/pandas scalars

    ts = pd.Timestamp(value)
    return None if pd.isna(ts) else date(ts.year, ts.month, ts.day)


def month_of(key: str) -> date:
    """Parse a monthly partition key, refusing anything that is not YYYY-MM-01
    (keys reach SQL and file paths, so they are validated before use)."""
    if not isinstance(key, str) or not _MONTH_KEY.match(key):
        raise ValueError(f"monthly partition key must look like YYYY-MM-01, got {key!r}")
    return date.fromisoformat(key)


def week_of(key: str) -> date:
    """Parse a weekly partition key: a Monday as YYYY-MM-DD."""
    if not isinstance(key, str) or not _DAY_KEY.match(key):
        raise ValueError(f"weekly partition key must look like YYYY-MM-DD, got {key!r}")
    day = date.fromisoformat(key)
    if day.weekday() != 0:
        raise ValueError(f"weekly partition key must be a Monday, got {key} ({day:%A})")
    return day


def drop_folder_name(month: date) -> str:
    """landing/YYYY-MM: the folder a month's drop is delivered to."""
    return f"{month:%Y-%m}"
