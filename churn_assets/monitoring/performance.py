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
    judge_month(perf, pairs, {version: validation_quality(metrics, scores)})  # the verdict
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from churn_assets.core.buckets import A_THRESHOLD
from churn_assets.core.metrics import classification_metrics
from churn_assets.marketing.treatments import TREATMENTS_TABLE, treated_candidate_sql
from churn_assets.model.gate import base_rate_log_loss, bootstrap_counts, weighted_auc
from churn_assets.monitoring.policy import performance_decision
from churn_assets.monitoring.queries import drop_if_lacking
from churn_assets.sql import ident, replace_partition, table_exists

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
    WHERE ($target_month IS NULL OR l.target_month = $target_month) {untreated}
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


def pairs_query(labels: str = "features.labels", scores: str = "scoring.churn_scores",
                untreated_only: bool = False) -> str:
    """SQL pairing each label with its cycle's scores at the lead bands (PAIR_COLUMNS);
    parameters $target_month (DATE or NULL) and $min_lead (days). `untreated_only` leaves out
    the candidates a treated-arm action reached (needs marketing.treatments)."""
    untreated = f"AND NOT {treated_candidate_sql('l')}" if untreated_only else ""
    return _PAIRS_SQL.format(labels=ident(labels), scores=ident(scores), band_case=_BAND_CASE, first=FIRST_SCORE,
                             untreated=untreated)


def lead_pairs(
    con: duckdb.DuckDBPyConnection,
    target_month: dt.date | None,
    labels: str = "features.labels",
    scores: str = "scoring.churn_scores",
    min_lead_days: int = HEADLINE_MIN_LEAD_DAYS,
) -> pd.DataFrame:
    """PAIR_COLUMNS for the month's scored untreated candidates: one `first_score` row per member
    whose first score of the cycle has lead >= min_lead_days, one row per lead band it was scored
    in. A candidate a treated-arm action reached is left out: its label shows the action as well
    as the risk, and the model predicts the risk with no action (the control arm and members
    nobody contacted are its honest judges)."""
    query = pairs_query(labels, scores, untreated_only=table_exists(con, TREATMENTS_TABLE))
    pairs = con.execute(query, {"target_month": target_month, "min_lead": min_lead_days}).df()
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


def quality(y, p, a_threshold: float = A_THRESHOLD, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> dict:
    """The metrics of PERFORMANCE_COLUMNS (without the keys) for labels y and scores p:
    core.metrics.classification_metrics (NaN where undefined, e.g. an empty bucket A) plus the
    group's size, churn rate, AUC interval and base-rate log loss."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    m = classification_metrics(y, p, a_threshold)
    base = base_log_loss(y)
    low, high = bootstrap_auc_ci(y, p, n_boot, seed)
    return {
        "n_scored": len(y),
        "churn_rate": float(y.mean()),
        "auc": m["auc"],
        "auc_ci_low": low,
        "auc_ci_high": high,
        "pr_auc": m["pr_auc"],
        "log_loss": m["log_loss"],
        "base_log_loss": base,
        "relative_log_loss": m["log_loss"] / base if not np.isnan(base) else np.nan,
        "recall_a": m["recall_a"],
        "precision_a": m["precision_a"],
    }


def performance_by_band(pairs: pd.DataFrame, a_threshold: float = A_THRESHOLD, n_boot: int = N_BOOTSTRAP,
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


def realised_performance(labels: pd.DataFrame, scores: pd.DataFrame, a_threshold: float = A_THRESHOLD,
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


# ---------------------------------------------------------------- the month's verdict

PERFORMANCE_TABLE = "monitoring.model_performance"


def validation_quality(metrics: Mapping[str, float], predictions: pd.DataFrame | None) -> dict[str, float]:
    """{auc, log_loss, relative_log_loss} of a version's validation month from its logged
    metrics (auc, log_loss) and hold-out predictions (NaN when not logged)."""
    has_preds = predictions is not None and {"is_churn", "churn_probability"} <= set(predictions.columns)
    return {
        "auc": float(metrics.get("auc", float("nan"))),
        "log_loss": float(metrics.get("log_loss", float("nan"))),
        "relative_log_loss": relative_log_loss(predictions["is_churn"], predictions["churn_probability"])
        if has_preds else float("nan"),
    }


@dataclass(frozen=True)
class MonthVerdict:
    perf: pd.DataFrame  # performance_by_band + valid_* columns + decision (headline rows only)
    version: str  # the version whose headline is the month's verdict
    headline: pd.Series  # its first_score row (empty: no member first scored early enough)
    decision: str
    late_first_scores: int

    def number(self, name: str) -> float:
        """A metric of the headline row (NaN when missing)."""
        value = self.headline.get(name, float("nan"))
        return float("nan") if pd.isna(value) else float(value)

    @property
    def n_scored(self) -> int:
        return int(self.headline.get("n_scored", 0)) if len(self.headline) else 0


def judge_month(
    perf: pd.DataFrame, pairs: pd.DataFrame, validation: Mapping[str, Mapping[str, float]],
    auc_margin: float = 0.02, relative_log_loss_margin: float = 0.05,
) -> MonthVerdict:
    """Compare each version's headline with its validation month (`validation`: version ->
    validation_quality). The alarm reads the headline only: short leads see the decision and
    would flatter the model. The month's verdict is that of the version that produced most
    headline scores."""
    perf = perf.copy()
    for column in ("auc", "log_loss", "relative_log_loss"):
        perf[f"valid_{column}"] = perf["model_version"].map(lambda v, c=column: validation[v][c])
    headline = perf["lead_band"] == FIRST_SCORE
    perf["decision"] = pd.Series(pd.NA, index=perf.index, dtype="string")
    perf.loc[headline, "decision"] = [
        performance_decision(row, validation[row["model_version"]], auc_margin, relative_log_loss_margin)
        for row in perf[headline].to_dict("records")
    ]  # one row per model version
    version = headline_version(pairs) or str(pairs["model_version"].value_counts().index[0])
    rows = perf[headline & (perf["model_version"] == version)]
    current = rows.iloc[0] if len(rows) else pd.Series(dtype=object)
    decision = str(current.get("decision", "none")) if len(rows) else "none"
    return MonthVerdict(perf, version, current, decision, int(late_first_scores(pairs).sum()))


def write_performance(con: duckdb.DuckDBPyConnection, perf: pd.DataFrame, month: dt.date) -> list[str]:
    """Replace the month's rows. A table of the one-row-per-version era cannot take bands: it
    is dropped and recreated; returns the columns it lacked ([] normally)."""
    lacking = drop_if_lacking(con, PERFORMANCE_TABLE, perf.columns)
    replace_partition(con, PERFORMANCE_TABLE, perf, "target_month", month)
    return lacking
