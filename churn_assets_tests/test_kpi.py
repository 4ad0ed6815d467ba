"""Monthly churn KPI on a hand-made month (March 2017) and its chart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churn_assets.features.kpi import KPI_COLUMNS, churn_chart_png, kpi_query, monthly_churn_kpi
from churn_assets.features.labels import compute_labels, labels_query

MAR = dt.date(2017, 3, 1)
RAW_SCHEMA = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"
LABELS_DDL = """
CREATE SCHEMA IF NOT EXISTS features;
CREATE TABLE features.labels (msno VARCHAR, target_month DATE, last_expire DATE,
                              renewal_gap_days INTEGER, is_churn INTEGER);
"""


def txn(msno, date, expire, cancel=0):
    t = dt.date.fromisoformat(date)
    return (msno, 41, 30, 99, 99, 1, t, dt.date.fromisoformat(expire), cancel, t.replace(day=1))


# who is what in March 2017 (active = membership active at some point in March)
TRANSACTIONS = [
    txn("a", "2017-01-10", "2017-02-10"),
    txn("a", "2017-02-10", "2017-03-12"),  # active; renews in March (gap 8)
    txn("a", "2017-03-20", "2017-04-20"),
    txn("b", "2017-02-05", "2017-03-05"),  # active; never renews: churned
    txn("c", "2017-01-01", "2017-02-01"),  # expired before March: not active
    txn("d", "2017-03-15", "2017-04-15"),  # first ever transaction in March: active and new
    txn("e", "2017-04-02", "2017-05-02"),  # starts after March: neither
    txn("f", "2016-12-01", "2017-01-01"),
    txn("f", "2017-03-10", "2017-02-28", cancel=1),  # dated in March, expiry before it: active
    txn("g", "2017-02-20", "2017-03-22"),  # active; renews 40 days late: churned
    txn("g", "2017-05-01", "2017-06-01"),
    txn("h", "2017-02-15", "2017-03-15"),  # new in February, not in March; renews on expiry
    txn("h", "2017-03-15", "2017-04-15"),
]


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute(RAW_SCHEMA.read_text())
    c.execute(LABELS_DDL)
    c.executemany("INSERT INTO raw.transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", TRANSACTIONS)
    yield c
    c.close()


def test_kpi_arithmetic_on_hand_made_month(con):
    con.executemany(
        "INSERT INTO features.labels VALUES (?, ?, ?, ?, ?)",
        [
            ("a", MAR, dt.date(2017, 3, 12), 8, 0),
            ("b", MAR, dt.date(2017, 3, 5), None, 1),
            ("g", MAR, dt.date(2017, 3, 22), 40, 1),
            ("h", MAR, dt.date(2017, 3, 15), 0, 0),
            ("x", dt.date(2017, 2, 1), dt.date(2017, 2, 3), None, 1),  # other month: ignored
        ],
    )
    kpi = monthly_churn_kpi(con, MAR)
    assert tuple(kpi.columns) == KPI_COLUMNS and len(kpi) == 1
    row = kpi.iloc[0]
    assert row.month == pd.Timestamp(MAR)
    # active: a, b, d, f, g, h (not c: expired in February; not e: starts in April)
    assert (row.active_members, row.new_members, row.renewed, row.churned) == (6, 1, 2, 2)
    assert row.churn_rate == pytest.approx(2 / 6)


def test_kpi_from_computed_labels_inside_duckdb(con):
    for month in (dt.date(2017, 2, 1), MAR):
        con.execute(f"INSERT INTO features.labels {labels_query()}", {"target_month": month})
    # March candidates from the official rule: a and h renewed, b and g churned
    labels = compute_labels(con, MAR)
    assert dict(zip(labels.msno, labels.is_churn)) == {"a": 0, "b": 1, "g": 1, "h": 0}
    con.execute(
        "CREATE SCHEMA kpi; CREATE TABLE kpi.monthly_churn (month DATE, active_members BIGINT, "
        "new_members BIGINT, renewed BIGINT, churned BIGINT, churn_rate DOUBLE)"
    )
    con.execute(f"INSERT INTO kpi.monthly_churn {kpi_query()}", {"month": MAR})
    assert con.execute("SELECT * FROM kpi.monthly_churn").fetchall() == [(MAR, 6, 1, 2, 2, pytest.approx(1 / 3))]


def test_kpi_of_a_month_without_members(con):
    row = monthly_churn_kpi(con, dt.date(2015, 1, 1)).iloc[0]
    assert (row.active_members, row.new_members, row.renewed, row.churned) == (0, 0, 0, 0)
    assert pd.isna(row.churn_rate)


def test_kpi_rejects_bad_inputs(con):
    with pytest.raises(ValueError):
        monthly_churn_kpi(con, dt.date(2017, 3, 15))
    with pytest.raises(ValueError):
        monthly_churn_kpi(con, MAR, labels="features.labels --")


def test_chart_written_and_non_empty(tmp_path):
    kpi = pd.DataFrame(
        {
            "month": pd.to_datetime(["2017-03-01", "2017-01-01", "2017-02-01"]),
            "active_members": [100, 90, 95],
            "new_members": [10, 12, 8],
            "renewed": [80, 75, 70],
            "churned": [6, 5, None],
            "churn_rate": [0.06, 5 / 90, None],  # a month whose labels are not in yet
        }
    )
    out = churn_chart_png(kpi, tmp_path / "charts" / "churn.png")
    assert out == tmp_path / "charts" / "churn.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
