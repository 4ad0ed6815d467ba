"""The monitoring loop over time, read from the warehouse as it stood on a given day: drift
share per week, members per bucket per week, realised one-month-ahead quality per month and
model version, and (synthetic worlds only) the oracle's quality on the same members.

`through` keeps a page time-true: weeks up to it, and only the months whose labels were
final on it (a re-materialised old week shows what was knowable that Monday). None: all.

    h = monitoring_history(con, through=dt.date(2017, 3, 6), oracle=find_oracle(paths))
    h.drift, h.buckets, h.performance, h.oracle
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.dates import as_date
from churn_assets.settings import Paths
from churn_assets.sql import ident, table_exists

DRIFT_TABLE = "monitoring.drift_reports"
SCORES_TABLE = "scoring.churn_scores"
PERFORMANCE_TABLE = "monitoring.model_performance"
LABELS_TABLE = "features.labels"
HEADLINE_BAND = "first_score"  # performance.FIRST_SCORE, without importing scikit-learn here
DRIFT_COLUMNS = ["week_start", "model_version", "drift_share", "n_drifted", "n_columns", "decision"]
BUCKET_COLUMNS = ["week_start", "bucket", "members"]
PERFORMANCE_COLUMNS = ["target_month", "model_version", "n_scored", "auc", "log_loss", "valid_auc", "valid_log_loss"]
ORACLE_COLUMNS = ["target_month", "n_pairs", "model_auc", "oracle_auc"]


@dataclass(frozen=True)
class MonitoringHistory:
    drift: pd.DataFrame  # DRIFT_COLUMNS, one row per week
    buckets: pd.DataFrame  # BUCKET_COLUMNS, one row per week and bucket
    performance: pd.DataFrame  # PERFORMANCE_COLUMNS: the headline (first score) per month and version
    oracle: pd.DataFrame  # ORACLE_COLUMNS: every version pooled, the same members (empty: no oracle)
    # marketing.retention_effect month rows (effect.SUMMARY_COLUMNS) final by `through`
    retention: pd.DataFrame = field(default_factory=pd.DataFrame)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    schema, _, name = ident(table).rpartition(".")
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema or "main", name]).fetchall()}


def _shaped(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` with `columns` in order (missing ones as NaN: tables written before they existed)."""
    return frame.reindex(columns=columns).reset_index(drop=True)


def _final_by(months: pd.Series, day: dt.date | None) -> pd.Series:
    from churn_assets.features.labels import final_on

    if day is None:
        return pd.Series(True, index=months.index)
    final = {m: final_on(as_date(m)) <= day for m in months.unique()}  # a few months, many rows
    return months.map(final).astype(bool)


def drift_history(con: duckdb.DuckDBPyConnection, through: dt.date | None = None) -> pd.DataFrame:
    if not table_exists(con, DRIFT_TABLE):
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    frame = con.execute(f"SELECT * FROM {ident(DRIFT_TABLE)} WHERE $through IS NULL OR week_start <= $through "
                        "ORDER BY week_start", {"through": through}).df()
    return _shaped(frame, DRIFT_COLUMNS)


def bucket_volumes(con: duckdb.DuckDBPyConnection, through: dt.date | None = None,
                   week: dt.date | None = None) -> pd.DataFrame:
    """Members scored per week and bucket (weeks <= `through`, or the one `week`); empty when
    the scores carry no bucket."""
    if not table_exists(con, SCORES_TABLE) or "bucket" not in _columns(con, SCORES_TABLE):
        return pd.DataFrame(columns=BUCKET_COLUMNS)
    return con.execute(
        f"SELECT week_start, bucket, count(*) AS members FROM {ident(SCORES_TABLE)} "
        "WHERE ($through IS NULL OR week_start <= $through) AND ($week IS NULL OR week_start = $week) "
        "GROUP BY ALL ORDER BY week_start, bucket", {"through": through, "week": week}).df()[BUCKET_COLUMNS]


def week_bucket_counts(con: duckdb.DuckDBPyConnection, week: dt.date) -> dict[str, int]:
    """{bucket: members scored} of one week ({} when the scores carry no bucket)."""
    frame = bucket_volumes(con, week=week)
    return {str(b): int(n) for b, n in zip(frame["bucket"], frame["members"])}


def performance_history(con: duckdb.DuckDBPyConnection, through: dt.date | None = None) -> pd.DataFrame:
    """The headline rows of monitoring.model_performance of the months final by `through`."""
    if not table_exists(con, PERFORMANCE_TABLE):
        return pd.DataFrame(columns=PERFORMANCE_COLUMNS)
    frame = con.execute(f"SELECT * FROM {ident(PERFORMANCE_TABLE)} ORDER BY target_month, model_version").df()
    if "lead_band" in frame.columns:  # the one-row-per-version era had the headline only
        frame = frame[frame["lead_band"] == HEADLINE_BAND]
    frame = frame[_final_by(frame["target_month"], through)]
    return _shaped(frame.assign(model_version=frame["model_version"].astype(str)), PERFORMANCE_COLUMNS)


def find_oracle(paths: Paths) -> Path | None:
    """The simulator's truth, when the data dir holds a synthetic world: `churn-assets generate`
    writes it beside the landing folders, the demo's stepped world under synthetic/. A real
    deployment has none."""
    for path in (paths.oracle, paths.data_dir / "synthetic" / "oracle" / "renewals.parquet"):
        if path.exists():
            return path
    return None


def oracle_history(con: duckdb.DuckDBPyConnection, oracle: Path | None,
                   through: dt.date | None = None) -> pd.DataFrame:
    """The first-score pairs' AUC against the oracle's on the same members, per month final
    by `through` (evaluation only: drawn beside the realised AUC, never decided on)."""
    if oracle is None or not all(table_exists(con, t) for t in (LABELS_TABLE, SCORES_TABLE)):
        return pd.DataFrame(columns=ORACLE_COLUMNS)
    from churn_assets.monitoring.oracle_evaluation import compare_pairs_with_oracle, read_oracle
    from churn_assets.monitoring.performance import lead_pairs

    pairs = lead_pairs(con, None)  # the pairs model_performance judges; the headline's only, below
    pairs = pairs[(pairs["lead_band"] == HEADLINE_BAND) & _final_by(pairs["target_month"], through)]
    if pairs.empty:
        return pd.DataFrame(columns=ORACLE_COLUMNS)
    return _shaped(compare_pairs_with_oracle(pairs, read_oracle(oracle)), ORACLE_COLUMNS)


def monitoring_history(con: duckdb.DuckDBPyConnection, through: dt.date | None = None,
                       oracle: Path | None = None) -> MonitoringHistory:
    return MonitoringHistory(
        drift=drift_history(con, through),
        buckets=bucket_volumes(con, through),
        performance=performance_history(con, through),
        oracle=oracle_history(con, oracle, through),
        retention=retention_history(con, through),
    )


def retention_history(con: duckdb.DuckDBPyConnection, through: dt.date | None = None) -> pd.DataFrame:
    """The retention experiment's month rows whose labels were final by `through` (all: None)."""
    from churn_assets.marketing.effect import months_final_by
    from churn_assets.marketing.queries import read_month_summaries

    rows = read_month_summaries(con)
    return rows if through is None else months_final_by(rows, through)
