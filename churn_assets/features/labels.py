"""Official WSDM Cup 2018 churn labels as a pure DuckDB query.

A member is a candidate for target month M when the last transaction of month M-1 (official
order) expires inside M; they churn when the first non-cancel transaction dated from M on
comes 30 or more days after that expiry (pulled back by intervening cancellations), or never.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.sql import ident
from churn_assets.dates import add_months, as_date, month_end

_SQL_PATH = Path(__file__).with_name("labels.sql")

LABEL_COLUMNS: tuple[str, ...] = ("msno", "target_month", "last_expire", "renewal_gap_days", "is_churn")


def validate_month(month: dt.date) -> dt.date:
    """Return `month` as a date if it is a first-of-month date, else raise ValueError."""
    if isinstance(month, dt.datetime):
        month = month.date()
    if not isinstance(month, dt.date) or month.day != 1:
        raise ValueError(f"expected a first-of-month date, got {month!r}")
    return month


@cache
def _sql_template() -> str:
    return _SQL_PATH.read_text()


def labels_query(transactions: str = "raw.transactions") -> str:
    """SQL text of the labeller with a `$target_month` parameter, e.g. for
    `INSERT INTO features.labels <query>` run entirely inside DuckDB.
    Columns: msno, target_month, last_expire, renewal_gap_days, is_churn."""
    return _sql_template().replace("{transactions}", ident(transactions))


def compute_labels(
    con: duckdb.DuckDBPyConnection,
    target_month: dt.date,
    transactions: str = "raw.transactions",
) -> pd.DataFrame:
    """Labels of target month `target_month`, one row per candidate, sorted by msno.

    `transactions` names a table or view with the columns of raw.transactions.
    renewal_gap_days is NULL when no renewal follows up to the end of the month that
    makes the labels final (final_after): such members churned, whenever they come back.
    """
    month = validate_month(target_month)
    return con.execute(labels_query(transactions), {"target_month": month}).df()


def final_after(target_month: dt.date) -> dt.date:
    """The drop month that makes target month M's labels final: the one holding
    the last day a renewal can still count (M's last day + 29 days). That is
    M+1, except for January, whose 31 January expiries may renew until 1 March."""
    return (month_end(validate_month(target_month)) + dt.timedelta(days=29)).replace(day=1)


def final_on(target_month: dt.date) -> dt.date:
    """The first day M's labels are final: the data must reach M's last day + 29 days,
    the last day a renewal still counts, so the watermark must be past it."""
    return month_end(validate_month(target_month)) + dt.timedelta(days=30)


_WATERMARK_SQL = """
SELECT max(d) FROM (
    SELECT max(transaction_date) AS d FROM {transactions} WHERE partition_month = $month
    UNION ALL SELECT max(date) FROM {user_logs} WHERE partition_month = $month)
"""


def _ingested_months(con: duckdb.DuckDBPyConnection, transactions: str) -> set[dt.date]:
    try:
        rows = con.execute(f"SELECT DISTINCT partition_month FROM {ident(transactions)}").fetchall()
    except duckdb.CatalogException:
        return set()
    return {as_date(r[0]) for r in rows}


def data_watermark(
    con: duckdb.DuckDBPyConnection, transactions: str = "raw.transactions", user_logs: str = "raw.user_logs"
) -> dt.date | None:
    """The day after the newest transaction or listening row of the newest ingested drop:
    everything dated before it has arrived (drops can be delivered part-way through their
    month, e.g. weekly). None when nothing is ingested."""
    ingested = _ingested_months(con, transactions)
    if not ingested:
        return None
    newest = max(ingested)
    try:
        sql = _WATERMARK_SQL.format(transactions=ident(transactions), user_logs=ident(user_logs))
        day = con.execute(sql, {"month": newest}).fetchone()[0]
    except duckdb.CatalogException:  # no listening table yet: transactions alone
        day = con.execute(f"SELECT max(transaction_date) FROM {ident(transactions)} WHERE partition_month = ?",
                          [newest]).fetchone()[0]
    if day is None:  # an empty (header-only) drop: it vouches for nothing past its month's start
        return newest
    return as_date(day) + dt.timedelta(days=1)


def final_months(
    con: duckdb.DuckDBPyConnection, transactions: str = "raw.transactions", user_logs: str = "raw.user_logs"
) -> set[dt.date]:
    """Target months whose labels are final given the data that has arrived: the drop
    holding M's last renewal day is ingested and the data watermark is past that day."""
    ingested = _ingested_months(con, transactions)
    watermark = data_watermark(con, transactions, user_logs)
    if watermark is None:
        return set()
    candidates = {add_months(p, -k) for p in ingested for k in (1, 2)}
    return {m for m in candidates if final_after(m) in ingested and final_on(m) <= watermark}


def labels_final(con: duckdb.DuckDBPyConnection, target_month: dt.date) -> bool:
    return validate_month(target_month) in final_months(con)


def published_agreement(con: duckdb.DuckDBPyConnection, target_month: dt.date) -> tuple[int, int, int]:
    """(published labels of the month, of them matched by a candidate, of them agreeing) against
    raw.churn_labels; (0, 0, 0) when no labels were ever published."""
    try:
        return con.execute(
            """SELECT count(*), count(l.msno), coalesce(sum((l.is_churn = p.is_churn)::INT), 0)
               FROM raw.churn_labels p LEFT JOIN features.labels l
                 ON l.msno = p.msno AND l.target_month = p.target_month
               WHERE p.target_month = ?""", [validate_month(target_month)],
        ).fetchone()
    except duckdb.CatalogException:  # no churn_logs drop ingested yet
        return 0, 0, 0
