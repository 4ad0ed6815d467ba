"""Realised model quality once a target month's labels are final.

Each label of target month M (a member whose plan expired in M) is paired with
the last score that member got before that expiry: the latest scoring week
with week_start <= last_expire, among scores made for this expiry cycle
(score row's membership_expire_date >= M, so a score of the previous cycle,
made before a renewal, never stands in). Members never scored are left out.
Quality is then computed per model_version that produced those scores.

    pairs = score_label_pairs(con, date(2017, 3, 1))        # on the warehouse
    performance_by_version(pairs)
    realised_performance(labels_df, scores_df)             # same, on frames
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from churn_assets.warehouse import ident

PERFORMANCE_COLUMNS = [
    "target_month", "model_version", "n_scored", "churn_rate",
    "auc", "pr_auc", "log_loss", "recall_a", "precision_a",
]

# $target_month: DATE, first day of the month (NULL: every month in the tables).
_PAIRS_SQL = """
SELECT l.target_month, l.msno, l.last_expire, l.is_churn,
       s.week_start, s.membership_expire_date, s.churn_probability, CAST(s.model_version AS VARCHAR) AS model_version
FROM {labels} l
JOIN {scores} s
  ON s.msno = l.msno
 AND s.week_start <= l.last_expire
 AND s.membership_expire_date >= l.target_month
WHERE $target_month IS NULL OR l.target_month = $target_month
QUALIFY row_number() OVER (PARTITION BY l.msno, l.target_month ORDER BY s.week_start DESC) = 1
ORDER BY l.target_month, l.msno
"""


def pairs_query(labels: str = "features.labels", scores: str = "scoring.churn_scores") -> str:
    """SQL pairing each label with its member's last score before expiry; one parameter $target_month."""
    return _PAIRS_SQL.format(labels=ident(labels), scores=ident(scores))


def score_label_pairs(
    con: duckdb.DuckDBPyConnection,
    target_month: dt.date | None,
    labels: str = "features.labels",
    scores: str = "scoring.churn_scores",
) -> pd.DataFrame:
    """(target_month, msno, last_expire, is_churn, week_start, membership_expire_date,
    churn_probability, model_version) for the month's scored candidates."""
    return con.execute(pairs_query(labels, scores), {"target_month": target_month}).df()


def _quality(y: np.ndarray, p: np.ndarray, a_threshold: float) -> dict:
    both_classes = 0 < y.sum() < len(y)
    in_a = p >= a_threshold
    return {
        "n_scored": len(y),
        "churn_rate": float(y.mean()),
        # AUC and PR-AUC are undefined when the month has one class only
        "auc": float(roc_auc_score(y, p)) if both_classes else np.nan,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else np.nan,
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "recall_a": float(in_a[y == 1].mean()) if y.any() else np.nan,
        "precision_a": float(y[in_a].mean()) if in_a.any() else np.nan,
    }


def performance_by_version(pairs: pd.DataFrame, a_threshold: float = 0.7) -> pd.DataFrame:
    """PERFORMANCE_COLUMNS, one row per (target_month, model_version) of `pairs`.
    recall_a: share of churners in bucket A (p >= a_threshold); precision_a: churn
    rate inside bucket A (NaN when A is empty)."""
    if not 0.0 < a_threshold < 1.0:
        raise ValueError(f"a_threshold must be in (0, 1), got {a_threshold}")
    rows = [
        {"target_month": month, "model_version": version,
         **_quality(g["is_churn"].to_numpy(int), g["churn_probability"].to_numpy(float), a_threshold)}
        for (month, version), g in pairs.groupby(["target_month", "model_version"], sort=True)
    ]  # one iteration per model version and month, not per row
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)


def realised_performance(labels: pd.DataFrame, scores: pd.DataFrame, a_threshold: float = 0.7) -> pd.DataFrame:
    """Realised quality per (target_month, model_version) from in-memory frames:
    `labels` (msno, target_month, last_expire, is_churn), `scores` (week_start, msno,
    membership_expire_date, churn_probability, model_version)."""
    con = duckdb.connect()
    try:
        con.register("labels_in", labels)
        con.register("scores_in", scores)
        pairs = score_label_pairs(con, None, "labels_in", "scores_in")
    finally:
        con.close()
    return performance_by_version(pairs, a_threshold)
