"""The weekly scoring tables in DuckDB: who is scored in a week, their as-of-Monday features,
and reading a week back. Pure (no Dagster): the assets and the benchmarks call these."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from churn_assets.features.member_features import build_member_features, expiring_members
from churn_assets.sql import ident, table_exists

SCORING_WINDOW_DAYS = 30
FEATURES_TABLE = "scoring.scoring_features"
SCORES_TABLE = "scoring.churn_scores"


def scoring_window(week_start: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end): memberships expiring in the 30 days from the Monday."""
    return week_start, week_start + dt.timedelta(days=SCORING_WINDOW_DAYS)


def build_scoring_features(con: duckdb.DuckDBPyConnection, week_start: dt.date, raw_schema: str = "raw") -> pd.DataFrame:
    """week_start, msno, as_of, membership_expire_date, FEATURE_COLUMNS for the members
    whose membership expires in scoring_window(week_start)."""
    start, end = scoring_window(week_start)
    expiring = expiring_members(con, start, end, raw_schema=raw_schema)
    con.register("_expiring", expiring[["msno"]])
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE scoring_population AS SELECT DISTINCT msno FROM _expiring")
    finally:
        con.unregister("_expiring")
    features = build_member_features(con, as_of=week_start, members="scoring_population", raw_schema=raw_schema)
    for column in ("as_of", "membership_expire_date"):  # .df() gives datetime64: keep DATE in DuckDB
        features[column] = pd.to_datetime(features[column]).dt.date
    features.insert(0, "week_start", pd.Series([week_start] * len(features), dtype=object))
    return features


def read_week(con: duckdb.DuckDBPyConnection, table: str, week: dt.date) -> pd.DataFrame | None:
    """The rows of `week` in `table`, by msno (None: the table does not exist yet)."""
    if not table_exists(con, table):
        return None
    return con.execute(f"SELECT * FROM {ident(table)} WHERE week_start = ? ORDER BY msno", [week]).df()
