"""The retention experiment's tables in DuckDB: what the treatments and retention effect
assets read. Pure (no Dagster)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from churn_assets.dates import add_months, as_date
from churn_assets.marketing.effect import MONTH, SUMMARY_COLUMNS
from churn_assets.marketing.treatments import TREATMENTS_TABLE
from churn_assets.scoring.queries import FEATURES_TABLE, SCORES_TABLE
from churn_assets.sql import ident, table_exists

_EARLIER_COLUMNS = ["week_start", "msno", "membership_expire_date", "bucket", "arm", "churn_probability"]


def read_scored_week(con: duckdb.DuckDBPyConnection, week: dt.date) -> pd.DataFrame | None:
    """This week's scoring.churn_scores rows with the last plan's last_amount_paid and
    last_list_price from scoring.scoring_features (same week), by msno. None when either
    table does not exist yet."""
    if not (table_exists(con, SCORES_TABLE) and table_exists(con, FEATURES_TABLE)):
        return None
    return con.execute(
        f"""SELECT s.*, f.last_amount_paid, f.last_list_price
            FROM {ident(SCORES_TABLE)} AS s
            LEFT JOIN {ident(FEATURES_TABLE)} AS f ON f.msno = s.msno AND f.week_start = s.week_start
            WHERE s.week_start = ?
            ORDER BY s.msno""",
        [week],
    ).df()


def read_earlier_treatments(con: duckdb.DuckDBPyConnection, week: dt.date,
                            columns: list[str] = _EARLIER_COLUMNS) -> pd.DataFrame:
    """The treatments of the weeks before `week` (by default cycle, arm, bucket, score: what
    suppression and the experiment-to-date balance look at). Later weeks never count, so
    re-materialising a week gives the same rows. Empty when the table does not exist yet."""
    if not table_exists(con, TREATMENTS_TABLE):
        return pd.DataFrame(columns=columns)
    names = ", ".join(ident(c) for c in columns)
    return con.execute(
        f"SELECT {names} FROM {ident(TREATMENTS_TABLE)} WHERE week_start < ? ORDER BY week_start, msno", [week]
    ).df()


# ---------------------------------------------------------------- effect measurement

EFFECT_TABLE = "marketing.retention_effect"
LABELS_TABLE = "features.labels"


def _effect_sql(with_scores: bool, with_features: bool) -> str:
    scores = ("s.action AS scored_action, s.discount_pct AS scored_discount_pct" if with_scores
              else "CAST(NULL AS VARCHAR) AS scored_action, CAST(NULL AS INTEGER) AS scored_discount_pct")
    features = ("f.last_list_price, f.last_plan_days" if with_features
                else "CAST(NULL AS DOUBLE) AS last_list_price, CAST(NULL AS DOUBLE) AS last_plan_days")
    joins = "".join([
        f" LEFT JOIN {ident(SCORES_TABLE)} AS s ON s.week_start = t.week_start AND s.msno = t.msno" if with_scores else "",
        f" LEFT JOIN {ident(FEATURES_TABLE)} AS f ON f.week_start = t.week_start AND f.msno = t.msno"
        if with_features else "",
    ])
    return f"""
        SELECT t.week_start, t.msno, t.membership_expire_date, t.bucket, t.arm, t.action, t.discount_pct,
               t.free_or_trial, {scores}, {features}, l.is_churn, l.msno IS NOT NULL AS matched
        FROM {ident(TREATMENTS_TABLE)} AS t
        LEFT JOIN {ident(LABELS_TABLE)} AS l
          ON l.target_month = $month AND l.msno = t.msno AND l.last_expire = t.membership_expire_date
        {joins}
        WHERE t.membership_expire_date >= $month AND t.membership_expire_date < $next
        ORDER BY t.membership_expire_date, t.msno"""


def read_effect_inputs(con: duckdb.DuckDBPyConnection, month: dt.date) -> pd.DataFrame | None:
    """The treatments whose cycle expires in target month `month` (effect.INPUT_COLUMNS), each
    with its label (same msno, label last_expire = membership_expire_date; is_churn NULL and
    matched false when the month's labels hold no such cycle), the action and discount its
    score proposed (scoring.churn_scores of the contact week: what a control member would have
    got) and its last plan's list price and length (scoring.scoring_features of that week;
    NULL when those tables do not exist). None when marketing.treatments or features.labels
    does not exist. Raises when a join repeats a treatment (rows in must equal rows out)."""
    if not (table_exists(con, TREATMENTS_TABLE) and table_exists(con, LABELS_TABLE)):
        return None
    params = {"month": month, "next": add_months(month, 1)}
    sql = _effect_sql(table_exists(con, SCORES_TABLE), table_exists(con, FEATURES_TABLE))
    frame = con.execute(sql, params).df()
    rows_in = con.execute(
        f"SELECT count(*) FROM {ident(TREATMENTS_TABLE)} WHERE membership_expire_date >= $month "
        "AND membership_expire_date < $next", params).fetchone()[0]
    if len(frame) != rows_in:
        raise ValueError(f"{rows_in} treatments expire in {month:%Y-%m} but the joins returned {len(frame)} rows: "
                         "a label, score or feature row is not unique per member")
    return frame


def read_month_summaries(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The month rows of marketing.retention_effect (effect.SUMMARY_COLUMNS), by target_month;
    empty when the table does not exist yet."""
    if not table_exists(con, EFFECT_TABLE):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    have = {r[0] for r in con.execute(f"DESCRIBE {ident(EFFECT_TABLE)}").fetchall()}
    columns = ", ".join(ident(c) if c in have else f"NULL AS {ident(c)}" for c in SUMMARY_COLUMNS)
    return con.execute(
        f"SELECT {columns} FROM {ident(EFFECT_TABLE)} WHERE level = ? ORDER BY target_month", [MONTH]
    ).df()


def read_offer_evidence(con: duckdb.DuckDBPyConnection, week: dt.date) -> pd.DataFrame | None:
    """The rung rows of marketing.retention_effect of the months whose labels were final by
    `week` (what the offer can learn from that Monday, also when an old week is re-run);
    None before the table exists."""
    from churn_assets.features.labels import final_on

    if not table_exists(con, EFFECT_TABLE):
        return None
    rows = con.execute(f"SELECT * FROM {ident(EFFECT_TABLE)} WHERE level = 'rung' ORDER BY target_month").df()
    return rows[[final_on(as_date(m)) <= week for m in rows["target_month"]]]


def read_offer_outcomes(con: duckdb.DuckDBPyConnection, week: dt.date) -> pd.DataFrame | None:
    """offer_model.EVIDENCE_COLUMNS of the paying bucket-B contacts of both arms (the control's
    discount_pct 0) whose labels were final by `week`: the score and listening of the contact
    week, the discount received, the label of the cycle. None before the tables exist."""
    from churn_assets.features.labels import final_on

    if not all(table_exists(con, t) for t in (TREATMENTS_TABLE, LABELS_TABLE, FEATURES_TABLE)):
        return None
    rows = con.execute(f"""
        SELECT t.churn_probability, CASE WHEN t.arm = 'control' THEN 0 ELSE coalesce(t.discount_pct, 0) END
                   AS discount_pct, f.active_days_30d, l.is_churn, l.target_month
        FROM {ident(TREATMENTS_TABLE)} AS t
        JOIN {ident(LABELS_TABLE)} AS l ON l.msno = t.msno AND l.last_expire = t.membership_expire_date
        JOIN {ident(FEATURES_TABLE)} AS f ON f.week_start = t.week_start AND f.msno = t.msno
        WHERE t.bucket = 'B' AND NOT t.free_or_trial
        ORDER BY t.week_start, t.msno""").df()
    return rows[[final_on(as_date(m)) <= week for m in rows["target_month"]]].reset_index(drop=True)
