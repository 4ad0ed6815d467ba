"""The retention experiment's tables in DuckDB: what the treatments asset reads.
Pure (no Dagster)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from churn_assets.scoring.queries import FEATURES_TABLE, SCORES_TABLE
from churn_assets.sql import ident, table_exists

TREATMENTS_TABLE = "marketing.treatments"
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


def read_earlier_treatments(con: duckdb.DuckDBPyConnection, week: dt.date) -> pd.DataFrame:
    """The treatments of the weeks before `week` (cycle, arm, bucket, score): what suppression
    and the experiment-to-date balance look at. Later weeks never count, so re-materialising a
    week gives the same rows. Empty when the table does not exist yet."""
    if not table_exists(con, TREATMENTS_TABLE):
        return pd.DataFrame(columns=_EARLIER_COLUMNS)
    columns = ", ".join(ident(c) for c in _EARLIER_COLUMNS)
    return con.execute(
        f"SELECT {columns} FROM {ident(TREATMENTS_TABLE)} WHERE week_start < ? ORDER BY week_start, msno", [week]
    ).df()
