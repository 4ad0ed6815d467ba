"""The time-true replay's two pieces: drops delivered as they stood on a day, and label
finality by the data's watermark rather than by which monthly folders exist."""
from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pandas as pd

from churn_assets.features.labels import data_watermark, final_months, final_on
from churn_assets.synthetic.delivery import DropCutter


def _raw(con, transactions: list[tuple[str, str]], logs: list[tuple[str, str]]) -> None:
    """raw.transactions / raw.user_logs with (partition_month, date) rows only."""
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.transactions (partition_month DATE, transaction_date DATE)")
    con.execute("CREATE TABLE raw.user_logs (partition_month DATE, date DATE)")
    for table, rows in (("raw.transactions", transactions), ("raw.user_logs", logs)):
        for row in rows:
            con.execute(f"INSERT INTO {table} VALUES (?, ?)", list(row))


def test_final_on_is_the_day_after_the_last_renewal_day():
    assert final_on(dt.date(2017, 2, 1)) == dt.date(2017, 3, 30)  # 28 Feb + 29 days is still open
    assert final_on(dt.date(2017, 1, 1)) == dt.date(2017, 3, 2)


def test_a_part_delivered_month_does_not_make_labels_final():
    with duckdb.connect() as con:
        _raw(con, [("2017-01-01", "2017-01-31"), ("2017-02-01", "2017-02-28"), ("2017-03-01", "2017-03-05")],
             [("2017-03-01", "2017-03-05")])
        # the March drop holds data before 6 March only: January (renewals until 2 March) is
        # final, February (until 29 March) is not, although its final drop folder exists
        assert data_watermark(con) == dt.date(2017, 3, 6)
        assert final_months(con) == {dt.date(2016, 12, 1), dt.date(2017, 1, 1)}
        con.execute("INSERT INTO raw.user_logs VALUES ('2017-03-01', '2017-03-29')")
        assert data_watermark(con) == dt.date(2017, 3, 30)
        assert dt.date(2017, 2, 1) in final_months(con)


def test_nothing_ingested_means_nothing_final():
    with duckdb.connect() as con:
        _raw(con, [], [])
        assert data_watermark(con) is None and final_months(con) == set()


def test_cut_drops_hold_only_rows_dated_before_the_day(tiny_world, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_world / "landing", source)
    landing = tmp_path / "landing"
    drops = DropCutter(source)
    months = drops.months()
    month = months[3]
    monday = month + dt.timedelta(days=(7 - month.weekday()) % 7 + 7)  # the second Monday of the month

    changed = drops.deliver(monday, landing)
    assert changed == [f"{m:%Y-%m}" for m in months if m <= month]
    folder = landing / f"{month:%Y-%m}"
    tx = pd.read_csv(folder / "transactions_logs.csv", dtype=str)
    logs = pd.read_csv(folder / "userlogs.csv", dtype=str)
    members = pd.read_csv(folder / "members_profile.csv", dtype=str)
    cut = monday.strftime("%Y%m%d")
    assert len(tx) and (tx["transaction_date"] < cut).all()
    assert len(logs) and (logs["date"] < cut).all()
    assert (members["registration_init_time"].fillna("0") < cut).all()
    full = pd.read_csv(source / f"{month:%Y-%m}" / "transactions_logs.csv", dtype=str)
    assert len(tx) == int((full["transaction_date"] < cut).sum())  # rows in = rows delivered by then
    assert not (folder / "churn_logs.csv").exists()  # labels of the month are not final yet
    assert not list(landing.rglob("*.part"))

    assert drops.deliver(monday, landing) == []  # nothing new on the same day
    later = final_on(month)
    drops.deliver(later, landing)
    whole = pd.read_csv(folder / "transactions_logs.csv", dtype=str)
    assert len(whole) == len(full)  # the month has ended: delivered whole
    published = source / f"{month:%Y-%m}" / "churn_logs.csv"
    assert published.exists()  # the generator publishes this month's labels ...
    assert (folder / "churn_logs.csv").read_bytes() == published.read_bytes()  # ... delivered once final
