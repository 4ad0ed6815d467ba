"""Point-in-time member features: one DuckDB query, the same for training and scoring.

Only rows dated strictly before `as_of` are read (transaction_date < as_of, date < as_of,
registration_init_time < as_of). The columns are KEY_COLUMNS + FEATURE_COLUMNS of
feature_spec.py; numeric features are DOUBLE, categorical ones VARCHAR.

    build_member_features(con, date(2017, 3, 1), members="features.candidates")
    con.execute(f"INSERT INTO features.member_features {features_query('raw', None)}",
                {"as_of": date(2017, 3, 1)})
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.dates import as_date
from churn_assets.sql import ident
from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS

_SQL_DIR = Path(__file__).parent


def _date(value: dt.date) -> dt.date:
    if not isinstance(value, dt.date):
        raise TypeError(f"expected a date, got {value!r}")
    return as_date(value)


@cache
def _sql(name: str) -> str:
    return (_SQL_DIR / name).read_text()


def features_query(raw_schema: str = "raw", members: str | None = None) -> str:
    """SQL of the feature build with one parameter, `$as_of` (DATE).

    `members` names a table or view with an `msno` column (duplicates ignored); None means
    every member with at least one transaction before as_of. Rows are sorted by msno.
    """
    raw = ident(raw_schema)
    if members is None:
        population, restrict = "SELECT msno FROM txn_agg", ""
    else:
        population = f"SELECT DISTINCT msno FROM {ident(members)}"
        restrict = f"AND msno IN (SELECT msno FROM {members})"
    numeric_casts = ",\n    ".join(
        c if c in CATEGORICAL_COLUMNS else f"CAST({c} AS DOUBLE) AS {c}" for c in FEATURE_COLUMNS
    )
    return _sql("member_features.sql").format(
        raw=raw,
        population=population,
        restrict=restrict,
        latest_first=_sql("latest_first.sql"),
        numeric_casts=numeric_casts,
    )


def build_member_features(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    members: str | None = None,
    raw_schema: str = "raw",
) -> pd.DataFrame:
    """Features as of `as_of` for the members of table/view `members` (None: every member
    with a transaction before as_of): msno, as_of, membership_expire_date, FEATURE_COLUMNS."""
    return con.execute(features_query(raw_schema, members), {"as_of": _date(as_of)}).df()


def training_rows(con: duckdb.DuckDBPyConnection, target_month: dt.date) -> pd.DataFrame:
    """The training rows of `target_month`: its label candidates with features as of its first day."""
    con.execute("CREATE OR REPLACE TEMP TABLE _candidates AS SELECT msno FROM features.labels WHERE target_month = ?",
                [_date(target_month)])
    return build_member_features(con, target_month, members="_candidates")


def expiring_members(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    raw_schema: str = "raw",
) -> pd.DataFrame:
    """Members whose membership_expire_date as of `start` (latest transaction dated before
    start, official order) lies in [start, end): columns msno, membership_expire_date."""
    sql = _sql("expiring_members.sql").format(
        raw=ident(raw_schema), latest_first=_sql("latest_first.sql")
    )
    return con.execute(sql, {"start": _date(start), "end": _date(end)}).df()
