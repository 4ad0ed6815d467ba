"""The monitoring domain's reads of the warehouse, and the population it compares.

Like with like: the model's training rows are the official rule's candidates, whose
latest transaction lies in the month before as_of. Members on long plans bought a year
ago are scored too, but are not what the reference describes, so they are left out of
the drift comparison (else their plan length and price read as drift every week).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import duckdb
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.model.data import newest_trainable_month
from churn_assets.sql import ident, table_exists

SCORING_FEATURES_TABLE = "scoring.scoring_features"
SCORES_TABLE = "scoring.churn_scores"
LABELS_TABLE = "features.labels"
# The training population's latest transaction is in the month before as_of (official rule).
CANDIDATE_MAX_DAYS_SINCE_TXN = 31
# months of history a labelled month needs to be trainable (what a training run asks for)
MIN_HISTORY_MONTHS = 3


def is_candidate(features: pd.DataFrame) -> pd.Series:
    """The population rule on a scoring-features frame: True for the training-like members."""
    return features["days_since_last_txn"] <= CANDIDATE_MAX_DAYS_SINCE_TXN


def missing_tables(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> list[str]:
    return [t for t in tables if not table_exists(con, t)]


def candidates_of_week(con: duckdb.DuckDBPyConnection, week: dt.date) -> pd.DataFrame:
    """FEATURE_COLUMNS of the week's training-like scoring population."""
    return con.execute(f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {SCORING_FEATURES_TABLE} "
                       "WHERE week_start = ? AND days_since_last_txn <= ?",
                       [week, CANDIDATE_MAX_DAYS_SINCE_TXN]).df()


def candidate_scores(con: duckdb.DuckDBPyConnection, week: dt.date) -> pd.DataFrame:
    """model_version (text), churn_probability of the same population's scores."""
    return con.execute(
        "SELECT CAST(s.model_version AS VARCHAR) AS model_version, s.churn_probability "
        f"FROM {SCORES_TABLE} s JOIN {SCORING_FEATURES_TABLE} f USING (week_start, msno) "
        "WHERE s.week_start = ? AND f.days_since_last_txn <= ?", [week, CANDIDATE_MAX_DAYS_SINCE_TXN]).df()


def scored_row_count(con: duckdb.DuckDBPyConnection, week: dt.date) -> int:
    """Every score of the week, long plans included."""
    return int(con.execute(f"SELECT count(*) FROM {SCORES_TABLE} WHERE week_start = ?", [week]).fetchone()[0])


def scored_weeks(con: duckdb.DuckDBPyConnection, weeks: list[dt.date]) -> set[dt.date]:
    """The weeks between min(weeks) and max(weeks) that have scoring features."""
    if not weeks or not table_exists(con, SCORING_FEATURES_TABLE):
        return set()
    return {r[0] for r in con.execute(f"SELECT DISTINCT week_start FROM {SCORING_FEATURES_TABLE} "
                                      "WHERE week_start BETWEEN ? AND ?", [min(weeks), max(weeks)]).fetchall()}


def can_build_features(con: duckdb.DuckDBPyConnection) -> bool:
    """Raw data to build a week's scoring features from is there."""
    return table_exists(con, "raw.transactions") and table_exists(con, "raw.members")


def label_count(con: duckdb.DuckDBPyConnection, month: dt.date) -> int:
    return int(con.execute(f"SELECT count(*) FROM {LABELS_TABLE} WHERE target_month = ?", [month]).fetchone()[0])


def trainable_through(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The newest final labelled month a training run could use now: drift_retrain_sensor asks
    for a run only when it is newer than what the model learned."""
    return newest_trainable_month(con, MIN_HISTORY_MONTHS)


def drop_if_lacking(con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[str]) -> list[str]:
    """Drop `table` when it lacks any of `columns` (a table of an earlier shape that cannot
    take the new rows); returns the missing names ([] and untouched otherwise)."""
    if not table_exists(con, table):
        return []
    existing = {r[0] for r in con.execute(f"DESCRIBE {ident(table)}").fetchall()}
    missing = sorted(set(columns) - existing)
    if missing:
        con.execute(f"DROP TABLE {ident(table)}")
    return missing
