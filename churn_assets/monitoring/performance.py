"""Realised model quality once a target month's labels are final, judged at the score's lead.

Each label of target month M (a member whose plan expired in M) is paired with the scores of
its expiry cycle: scoring weeks with week_start <= last_expire whose score was made for this
cycle (membership_expire_date >= M, so a score of the previous cycle, made before a renewal,
never stands in). lead_days = last_expire - week_start.

- `first_score` (the headline): the member's earliest score of the cycle, the one marketing
  acts on a month ahead, kept only when its lead is >= 21 days. A member first scored later
  (e.g. who bought a short plan) is left out of the headline and counted as a late first score.
- lead bands '21-30', '14-20', '7-13', '0-6': the member's earliest score within the band.
  The last score before expiry already sees the decision (late auto-renew cancellations), so
  the short bands read better than the model is: they are reported, never alarmed on.

Quality is computed per (target_month, model_version, lead_band). Log loss is also reported
relative to the log loss of predicting the group's churn rate (base_log_loss), a measure of
skill that does not move with the base rate, and AUC carries a bootstrap 95 % interval.

    pairs = lead_pairs(con, date(2017, 3, 1))              # on the warehouse
    performance_by_band(pairs)
    realised_performance(labels_df, scores_df)             # same, on frames
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from churn_assets.model.gate import base_rate_log_loss, bootstrap_counts, weighted_auc
from churn_assets.warehouse import ident

FIRST_SCORE = "first_score"
HEADLINE_MIN_LEAD_DAYS = 21
# (name, lowest lead, highest lead) in days before last_expire; a score's week is one Monday
LEAD_BANDS: tuple[tuple[str, int, int], ...] = (("21-30", 21, 30), ("14-20", 14, 20), ("7-13", 7, 13), ("0-6", 0, 6))
BAND_ORDER: tuple[str, ...] = (FIRST_SCORE, *(name for name, _, _ in LEAD_BANDS))

PAIR_COLUMNS = [
    "target_month", "msno", "last_expire", "is_churn", "week_start", "membership_expire_date",
    "churn_probability", "model_version", "lead_days", "lead_band",
]
PERFORMANCE_COLUMNS = [
    "target_month", "model_version", "lead_band", "n_scored", "churn_rate",
    "auc", "auc_ci_low", "auc_ci_high", "pr_auc", "log_loss", "base_log_loss", "relative_log_loss",
    "recall_a", "precision_a",
]
N_BOOTSTRAP, BOOTSTRAP_SEED = 1000, 0
_EPS = 1e-15

_BAND_CASE = "\n".join(f"           WHEN lead_days BETWEEN {lo} AND {hi} THEN '{name}'" for name, lo, hi in LEAD_BANDS)

# $target_month: DATE, first day of the month (NULL: every month in the tables);
# $min_lead: the headline's smallest lead in days. One row per (member, month, lead_band).
_PAIRS_SQL = """
WITH cycle AS (
    SELECT l.target_month, l.msno, l.last_expire, l.is_churn,
           s.week_start, s.membership_expire_date, s.churn_probability,
           CAST(s.model_version AS VARCHAR) AS model_version,
           CAST(date_diff('day', CAST(s.week_start AS DATE), CAST(l.last_expire AS DATE)) AS INTEGER) AS lead_days
    FROM {labels} l
    JOIN {scores} s
      ON s.msno = l.msno
     AND s.week_start <= l.last_expire
     AND s.membership_expire_date >= l.target_month
    WHERE $target_month IS NULL OR l.target_month = $target_month
),
banded AS (
    SELECT *,
           CASE
{band_case}
           END AS band,
           row_number() OVER (PARTITION BY target_month, msno ORDER BY week_start, model_version) AS cycle_rank,
           row_number() OVER (PARTITION BY target_month, msno, band ORDER BY week_start, model_version) AS band_rank
    FROM cycle
)
SELECT target_month, msno, last_expire, is_churn, week_start, membership_expire_date,
       churn_probability, model_version, lead_days, '{first}' AS lead_band
FROM banded WHERE cycle_rank = 1 AND lead_days >= $min_lead
UNION ALL
SELECT target_month, msno, last_expire, is_churn, week_start, membership_expire_date,
       churn_probability, model_version, lead_days, band AS lead_band
FROM banded WHERE band IS NOT NULL AND band_rank = 1
ORDER BY target_month, lead_band, msno
"""


def pairs_query(labels: str = "features.labels", scores: str = "scoring.churn_scores") -> str:
    """SQL pairing each label with its cycle's scores at the lead bands (PAIR_COLUMNS);
    parameters $target_month (DATE or NULL) and $min_lead (days)."""
    return _PAIRS_SQL.format(labels=ident(labels), scores=ident(scores), band_case=_BAND_CASE, first=FIRST_SCORE)


def lead_pairs(
    con: duckdb.DuckDBPyConnection,
    target_month: dt.date | None,
    labels: str = "features.labels",
    scores: str = "scoring.churn_scores",
    min_lead_days: int = HEADLINE_MIN_LEAD_DAYS,
) -> pd.DataFrame:
    """PAIR_COLUMNS for the month's scored candidates: one `first_score` row per member whose
    first score of the cycle has lead >= min_lead_days, one row per lead band it was scored in."""
    pairs = con.execute(pairs_query(labels, scores), {"target_month": target_month, "min_lead": min_lead_days}).df()
    return pairs[PAIR_COLUMNS]


def pairs_from_frames(labels: pd.DataFrame, scores: pd.DataFrame,
                      min_lead_days: int = HEADLINE_MIN_LEAD_DAYS) -> pd.DataFrame:
    """lead_pairs on in-memory frames: `labels` (msno, target_month, last_expire, is_churn),
    `scores` (week_start, msno, membership_expire_date, churn_probability, model_version)."""
    con = duckdb.connect()
    try:
        con.register("labels_in", labels)
        con.register("scores_in", scores)
        return lead_pairs(con, None, "labels_in", "scores_in", min_lead_days)
    finally:
        con.close()


def late_first_scores(pairs: pd.DataFrame) -> pd.Series:
    """Per target_month, members scored in their cycle whose first score came too late for the
    headline (they have band rows but no first_score row)."""
    members = pairs.groupby("target_month")["msno"].nunique()
    headline = pairs[pairs["lead_band"] == FIRST_SCORE].groupby("target_month")["msno"].nunique()
    return (members - headline.reindex(members.index, fill_value=0)).astype(int).rename("late_first_scores")


# ---------------------------------------------------------------- metrics


def base_log_loss(y: np.ndarray) -> float:
    """Log loss of predicting the observed churn rate for everyone (the binary entropy);
    NaN for an empty or one-class group, where no skill can be measured."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return np.nan
    return base_rate_log_loss(y)


def relative_log_loss(y, p) -> float:
    """log_loss / base_log_loss: 1 is no better than the base rate, lower is better. At the same
    ranking and calibration it moves far less with the base rate than log loss does."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    base = base_log_loss(y)
    if np.isnan(base):
        return np.nan
    return float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1]) / base)


def bootstrap_auc_ci(y, p, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC (resampling members with replacement),
    with the gate's resampler and weighted rank AUC (no loop over rows). A fixed seed gives
    the same interval for the same data."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return np.nan, np.nan
    aucs = np.concatenate([weighted_auc(counts, y, p) for counts in bootstrap_counts(len(y), n_boot, seed)])
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(aucs, [tail, 100 - tail])  # a one-class resample has no AUC
    return float(low), float(high)


def quality(y, p, a_threshold: float = 0.7, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> dict:
    """The metrics of PERFORMANCE_COLUMNS (without the keys) for labels y and scores p."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    both_classes = 0 < y.sum() < len(y)
    in_a = p >= a_threshold
    ll = float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1]))
    base = base_log_loss(y)
    low, high = bootstrap_auc_ci(y, p, n_boot, seed)
    return {
        "n_scored": len(y),
        "churn_rate": float(y.mean()),
        # AUC and PR-AUC are undefined when the group has one class only
        "auc": float(roc_auc_score(y, p)) if both_classes else np.nan,
        "auc_ci_low": low,
        "auc_ci_high": high,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else np.nan,
        "log_loss": ll,
        "base_log_loss": base,
        "relative_log_loss": ll / base if not np.isnan(base) else np.nan,
        "recall_a": float(in_a[y == 1].mean()) if y.any() else np.nan,
        "precision_a": float(y[in_a].mean()) if in_a.any() else np.nan,
    }


def performance_by_band(pairs: pd.DataFrame, a_threshold: float = 0.7, n_boot: int = N_BOOTSTRAP,
                        seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """PERFORMANCE_COLUMNS, one row per (target_month, model_version, lead_band) of `pairs`,
    bands in BAND_ORDER. recall_a: share of churners in bucket A (p >= a_threshold);
    precision_a: churn rate inside bucket A (NaN when A is empty)."""
    if not 0.0 < a_threshold < 1.0:
        raise ValueError(f"a_threshold must be in (0, 1), got {a_threshold}")
    rows = [
        {"target_month": month, "model_version": version, "lead_band": band,
         **quality(g["is_churn"].to_numpy(int), g["churn_probability"].to_numpy(float), a_threshold, n_boot, seed)}
        for (month, version, band), g in pairs.groupby(["target_month", "model_version", "lead_band"], sort=True)
    ]  # one iteration per month, version and band, not per row
    out = pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)
    rank = out["lead_band"].map({b: i for i, b in enumerate(BAND_ORDER)})
    return out.assign(_rank=rank).sort_values(["target_month", "model_version", "_rank"]).drop(
        columns="_rank").reset_index(drop=True)


def realised_performance(labels: pd.DataFrame, scores: pd.DataFrame, a_threshold: float = 0.7,
                         n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """performance_by_band of pairs_from_frames(labels, scores)."""
    return performance_by_band(pairs_from_frames(labels, scores), a_threshold, n_boot, seed)


def headline_version(pairs: pd.DataFrame) -> str | None:
    """The model version that produced most first_score rows (the month's verdict is its);
    ties go to the higher version string. None when there is no headline row."""
    head = pairs.loc[pairs["lead_band"] == FIRST_SCORE, "model_version"].astype(str)
    if head.empty:
        return None
    counts = head.value_counts()
    return str(max(counts.index[counts == counts.max()], key=lambda v: (len(v), v)))


def bands_markdown(perf: pd.DataFrame) -> str:
    """The lead bands of `perf` as a markdown table (the asset's metadata)."""
    cols = ["model_version", "lead_band", "n_scored", "churn_rate", "auc", "auc_ci_low", "auc_ci_high",
            "log_loss", "relative_log_loss"]
    return perf[cols].to_markdown(index=False, floatfmt=".4f") if len(perf) else "_no scored labels_"
