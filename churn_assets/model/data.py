"""Training frames from the feature store: features as of month M joined to M's labels.

Only candidates no intervention reached are learned from: a member that marketing called,
discounted or reminded for an expiry in M renews partly because of it, so its label is not
the churn the model must predict (the risk under business as usual). Learning from it would
teach the model that the actions' targets are safe, and the next month it would stop
flagging exactly the members the actions kept. The control arm, the members thanked by the
baseline e-mail and those nobody contacted stay, the hold-out of buckets A and B weighted
(sample_weight) to stand for the intervened it was drawn beside.

Only final labelled months (churn_assets.features.labels.final_months) are trained or
validated on, and only months with at least `min_history_months` of data before them, so
that the 90-day feature windows of training rows are as full as those of scoring rows.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS, KEY_COLUMNS, TARGET
from churn_assets.features.labels import final_months
from churn_assets.dates import add_months, as_date
from churn_assets.marketing.treatments import (HELD_OUT_SQL, TREATMENTS_TABLE, intervention_sql, reaches_sql,
                                              treated_candidate_sql)
from churn_assets.sql import ident, table_exists

FRAME_COLUMNS: list[str] = [*KEY_COLUMNS, *FEATURE_COLUMNS, TARGET, "target_month", "sample_weight"]

_FRAME_SQL = """
SELECT {feature_cols}, l.is_churn, l.target_month, 1.0 AS sample_weight
FROM features.member_features f
JOIN features.labels l ON l.msno = f.msno AND l.target_month = f.as_of
WHERE f.as_of IN (SELECT unnest(CAST($months AS DATE[]))) {untreated}
ORDER BY f.as_of, f.msno
"""
# The members an intervention reached leave the frame; the hold-out of the same buckets stands
# in for them, each weighing 1 / (the month's held-out share of intervened + held out), so the
# frame keeps the population's mix of risks (the called are the riskiest, and after a shift
# the shifted): inverse-probability weights of a randomised hold-out.
_WEIGHT_SQL = """
WITH reach AS (
    SELECT l.msno, l.target_month, bool_or({intervention}) AS intervened, bool_or({held_out}) AS held_out
    FROM features.labels l JOIN marketing.treatments t ON {reaches}
    WHERE l.target_month IN (SELECT unnest(CAST($months AS DATE[])))
    GROUP BY l.msno, l.target_month
), share AS (
    SELECT target_month, count(*) FILTER (WHERE held_out AND NOT intervened) AS kept,
           count(*) FILTER (WHERE held_out OR intervened) AS reached
    FROM reach GROUP BY target_month
)
SELECT r.msno, r.target_month, s.reached / s.kept AS sample_weight
FROM reach r JOIN share s USING (target_month)
WHERE r.held_out AND NOT r.intervened AND s.kept > 0
"""
_TREATED_COUNT_SQL = """
SELECT count(*) FROM features.labels l
WHERE l.target_month IN (SELECT unnest(CAST($months AS DATE[]))) AND {treated}
"""

_LABELLED_SQL = """
SELECT DISTINCT l.target_month
FROM features.labels l
WHERE l.target_month IN (SELECT DISTINCT as_of FROM features.member_features)
ORDER BY 1
"""


def load_training_frame(con: duckdb.DuckDBPyConnection, months: list[dt.date],
                        untreated_only: bool = True) -> pd.DataFrame:
    """FRAME_COLUMNS for the candidates of `months` no intervention reached (all of them with
    `untreated_only` False, every weight 1), features as_of = first day of the month, labels of
    that target month, sorted by month, msno."""
    if not months:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    cols = ", ".join(f"f.{ident(c)}" for c in [*KEY_COLUMNS, *FEATURE_COLUMNS])
    honest = untreated_only and table_exists(con, TREATMENTS_TABLE)
    untreated = f"AND NOT {treated_candidate_sql()}" if honest else ""
    params = {"months": [as_date(m) for m in months]}
    frame = con.execute(_FRAME_SQL.format(feature_cols=cols, untreated=untreated), params).df()
    for c in ("as_of", "membership_expire_date", "target_month"):
        frame[c] = pd.to_datetime(frame[c]).dt.date
    frame[TARGET] = frame[TARGET].astype("int64")
    if untreated:
        weights = con.execute(_WEIGHT_SQL.format(intervention=intervention_sql(), held_out=HELD_OUT_SQL,
                                                 reaches=reaches_sql()), params).df()
        if len(weights):
            weights["target_month"] = pd.to_datetime(weights["target_month"]).dt.date
            w = frame[["msno", "target_month"]].merge(weights, on=["msno", "target_month"], how="left")
            frame["sample_weight"] = w["sample_weight"].fillna(1.0).to_numpy(float)
    return frame


def treated_candidates(con: duckdb.DuckDBPyConnection, months: list[dt.date]) -> int:
    """How many labelled candidates of `months` load_training_frame leaves out as treated."""
    if not months or not table_exists(con, TREATMENTS_TABLE):
        return 0
    return int(con.execute(_TREATED_COUNT_SQL.format(treated=treated_candidate_sql()), {"months": [as_date(m) for m in months]})
               .fetchone()[0])


def training_window(months: list[dt.date], train_months: int) -> tuple[list[dt.date], dt.date]:
    """(train months, validation month) from the final labelled `months` (oldest first): the
    `train_months` months before the newest, and the newest. ValueError when there are too few."""
    k = train_months
    if len(months) < k + 1:
        raise ValueError(
            f"need {k + 1} final labelled months ({k} to train, 1 to validate), found "
            f"{len(months)}: {[m.isoformat() for m in months]}. Ingest more months or lower train_months."
        )
    return months[-k - 1 : -1], months[-1]


def labelled_months(con: duckdb.DuckDBPyConnection, min_history_months: int = 0) -> list[dt.date]:
    """The final labelled months with features, oldest first, that have at least
    `min_history_months` ingested months of transactions before them."""
    needed = ("features.labels", "features.member_features", "raw.transactions")
    if not all(table_exists(con, t) for t in needed):
        return []
    first = as_date(con.execute("SELECT min(partition_month) FROM raw.transactions").fetchone()[0])
    final = final_months(con)
    months = [as_date(r[0]) for r in con.execute(_LABELLED_SQL).fetchall()]
    return [m for m in months if m in final and m >= add_months(first, min_history_months)]


def newest_trainable_month(con: duckdb.DuckDBPyConnection, min_history_months: int = 3) -> dt.date | None:
    """The newest final labelled month a training run could use now (None: none yet).
    A retrain can change the model only when this is newer than what production learned."""
    months = labelled_months(con, min_history_months)
    return months[-1] if months else None
