"""The official WSDM churn rule on hand-written transaction histories.

Target month is February 2017 throughout: history window = January 2017.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churn_assets.features.labels import LABEL_COLUMNS, compute_labels, labels_query

FEB = dt.date(2017, 2, 1)
RAW_SCHEMA = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"


def d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def txn(msno, date, expire, cancel=0, price=99, days=30, method=41):
    """One raw.transactions row (amount paid = list price, auto-renew on)."""
    t = d(date)
    return (msno, method, days, price, price, 1, t, d(expire), cancel, t.replace(day=1))


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute(RAW_SCHEMA.read_text())
    yield c
    c.close()


def load(con, rows) -> None:
    con.executemany("INSERT INTO raw.transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def label_of(con, rows, msno="m") -> dict | None:
    """Label row of `msno` as a dict, or None when not a candidate."""
    load(con, rows)
    df = compute_labels(con, FEB)
    hit = df[df.msno == msno]
    if hit.empty:
        return None
    r = hit.iloc[0]
    gap = None if pd.isna(r.renewal_gap_days) else int(r.renewal_gap_days)
    return {"last_expire": r.last_expire.date(), "gap": gap, "churn": int(r.is_churn)}


# ---------------------------------------------------------------- history window ordering


def test_same_date_signature_sorts_as_string_not_number(con):
    # '99'+'30'+'41' = '993041' > '1493041' as strings, so the 99 row comes first and the
    # 149 row is last (numeric order would make the 99 row, expiring in March, the last one).
    rows = [
        txn("m", "2017-01-10", "2017-03-15", price=99),
        txn("m", "2017-01-10", "2017-02-20", price=149),
    ]
    assert label_of(con, rows) == {"last_expire": d("2017-02-20"), "gap": None, "churn": 1}


def test_same_date_signature_uses_days_and_method_too(con):
    # same price; '99' '7' '41' -> '99741' > '993041': the 7-day row is first, 30-day row last
    rows = [
        txn("m", "2017-01-10", "2017-02-18", days=30),
        txn("m", "2017-01-10", "2017-03-18", days=7),
    ]
    assert label_of(con, rows)["last_expire"] == d("2017-02-18")


def test_two_cancellations_same_date_sorted_by_expiry_descending(con):
    rows = [
        txn("m", "2017-01-20", "2017-02-10", cancel=1),
        txn("m", "2017-01-20", "2017-02-25", cancel=1),
    ]
    assert label_of(con, rows)["last_expire"] == d("2017-02-10")


def test_two_renewals_same_date_sorted_by_expiry_ascending(con):
    rows = [
        txn("m", "2017-01-20", "2017-02-25"),
        txn("m", "2017-01-20", "2017-02-10"),
    ]
    assert label_of(con, rows)["last_expire"] == d("2017-02-25")


def test_renewal_before_cancellation_on_same_signature(con):
    # the cancellation is last, so its (earlier) expiry is the candidate's expiry
    rows = [
        txn("m", "2017-01-20", "2017-02-15", cancel=1),
        txn("m", "2017-01-20", "2017-03-10", cancel=0),
    ]
    assert label_of(con, rows)["last_expire"] == d("2017-02-15")


def test_later_date_wins_over_signature(con):
    rows = [
        txn("m", "2017-01-10", "2017-03-10", price=99),
        txn("m", "2017-01-11", "2017-02-11", price=149),
    ]
    assert label_of(con, rows)["last_expire"] == d("2017-02-11")


# ---------------------------------------------------------------- candidates


def test_member_without_history_window_transaction_is_not_candidate(con):
    rows = [
        txn("m", "2016-12-20", "2017-02-15"),  # before the window, expiring in February
        txn("n", "2017-02-03", "2017-02-28"),  # only inside the target month
        txn("c", "2017-01-15", "2017-02-15"),  # a real candidate, for contrast
    ]
    load(con, rows)
    assert compute_labels(con, FEB).msno.tolist() == ["c"]


@pytest.mark.parametrize("expire", ["2017-01-31", "2017-03-01", "2017-04-15"])
def test_last_expiry_outside_target_month_is_not_candidate(con, expire):
    # an earlier January row expiring in February does not count: only the last row does
    rows = [txn("m", "2017-01-02", "2017-02-02"), txn("m", "2017-01-15", expire)]
    assert label_of(con, rows) is None


def test_expiry_before_transaction_date_in_history_is_not_candidate(con):
    # the quirk of the real data: a cancellation dated after its own expiry
    rows = [
        txn("m", "2017-01-05", "2017-02-05"),
        txn("m", "2017-01-30", "2017-01-28", cancel=1),
    ]
    assert label_of(con, rows) is None


@pytest.mark.parametrize("expire", ["2017-02-01", "2017-02-28"])
def test_target_month_bounds_are_inclusive(con, expire):
    assert label_of(con, [txn("m", "2017-01-15", expire)])["last_expire"] == d(expire)


# ---------------------------------------------------------------- the walk after the window


@pytest.mark.parametrize(("renew_on", "gap", "churn"), [("2017-03-14", 29, 0), ("2017-03-15", 30, 1)])
def test_renewal_29_days_is_kept_30_days_is_churn(con, renew_on, gap, churn):
    rows = [txn("m", "2017-01-13", "2017-02-13"), txn("m", renew_on, "2017-04-14")]
    assert label_of(con, rows) == {"last_expire": d("2017-02-13"), "gap": gap, "churn": churn}


def test_renewal_before_expiry_has_negative_gap_and_is_kept(con):
    rows = [txn("m", "2017-01-10", "2017-02-10"), txn("m", "2017-02-01", "2017-03-10")]
    assert label_of(con, rows) == {"last_expire": d("2017-02-10"), "gap": -9, "churn": 0}


def test_no_later_transaction_is_churn_with_null_gap(con):
    assert label_of(con, [txn("m", "2017-01-10", "2017-02-10")]) == {
        "last_expire": d("2017-02-10"),
        "gap": None,
        "churn": 1,
    }


def test_only_cancellations_later_is_churn(con):
    rows = [txn("m", "2017-01-10", "2017-02-10"), txn("m", "2017-02-05", "2017-02-06", cancel=1)]
    assert label_of(con, rows)["churn"] == 1


def test_cancellation_moves_expiry_earlier(con):
    # from Feb 20 the renewal is 23 days late (kept); the cancel pulls expiry to Feb 10: 33 days
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-02-05", "2017-02-10", cancel=1),
        txn("m", "2017-03-15", "2017-04-15"),
    ]
    # the reported last_expire stays the candidate's history-window expiry
    assert label_of(con, rows) == {"last_expire": d("2017-02-20"), "gap": 33, "churn": 1}


def test_cancellation_with_later_expiry_does_not_move_expiry(con):
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-02-05", "2017-03-30", cancel=1),
        txn("m", "2017-03-15", "2017-04-15"),
    ]
    assert label_of(con, rows)["gap"] == 23


def test_earliest_of_several_cancellations_wins(con):
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-02-03", "2017-02-08", cancel=1),
        txn("m", "2017-02-05", "2017-02-15", cancel=1),
        txn("m", "2017-03-01", "2017-04-01"),
    ]
    assert label_of(con, rows)["gap"] == 21


def test_cancellation_dated_after_its_expiry_pulls_back(con):
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-02-12", "2017-02-10", cancel=1),  # expiry 2 days before its own date
        txn("m", "2017-03-01", "2017-04-01"),
    ]
    assert label_of(con, rows)["gap"] == 19


def test_cancellation_after_first_renewal_is_ignored(con):
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-03-01", "2017-04-01"),
        txn("m", "2017-03-02", "2017-01-01", cancel=1),
    ]
    assert label_of(con, rows)["gap"] == 9


def test_walk_same_date_renewal_precedes_cancellation_on_same_signature(con):
    # renewal first: the walk ends before the cancellation can pull expiry back
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-03-01", "2017-02-01", cancel=1),
        txn("m", "2017-03-01", "2017-04-01", cancel=0),
    ]
    assert label_of(con, rows)["gap"] == 9


def test_walk_same_date_cancellation_with_higher_signature_comes_first(con):
    # cancel '993041' sorts before renewal '1493041' on the same date, so it pulls back
    rows = [
        txn("m", "2017-01-20", "2017-02-20"),
        txn("m", "2017-03-01", "2017-02-01", cancel=1, price=99),
        txn("m", "2017-03-01", "2017-04-01", cancel=0, price=149),
    ]
    assert label_of(con, rows)["gap"] == 28


def test_renewal_much_later_is_churn(con):
    # a return after the month that makes February final (March) is churn; its gap is not read
    rows = [txn("m", "2017-01-20", "2017-02-20"), txn("m", "2017-06-01", "2017-07-01")]
    assert label_of(con, rows) == {"last_expire": d("2017-02-20"), "gap": None, "churn": 1}
    rows = [txn("m", "2017-01-20", "2017-02-20"), txn("m", "2017-03-31", "2017-04-30")]
    assert label_of(con, rows) == {"last_expire": d("2017-02-20"), "gap": 39, "churn": 1}


# ---------------------------------------------------------------- interface


def test_output_columns_types_and_order(con):
    load(
        con,
        [
            txn("b", "2017-01-10", "2017-02-10"),
            txn("a", "2017-01-11", "2017-02-11"),
            txn("a", "2017-02-20", "2017-03-20"),
        ],
    )
    df = compute_labels(con, FEB)
    assert tuple(df.columns) == LABEL_COLUMNS
    assert df.msno.tolist() == ["a", "b"]
    assert (df.target_month == pd.Timestamp(FEB)).all()
    assert df.renewal_gap_days.tolist()[0] == 9 and pd.isna(df.renewal_gap_days.iloc[1])
    assert df.is_churn.tolist() == [0, 1]


def test_rejects_non_first_of_month_and_bad_table_name(con):
    with pytest.raises(ValueError):
        compute_labels(con, dt.date(2017, 2, 2))
    with pytest.raises(ValueError):
        compute_labels(con, FEB, transactions="raw.transactions; DROP TABLE x")


def test_custom_view_and_sql_insert(con):
    load(con, [txn("m", "2017-01-10", "2017-02-10"), txn("m", "2017-02-15", "2017-03-15")])
    con.execute("CREATE TEMP VIEW my_tx AS SELECT * FROM raw.transactions")
    assert compute_labels(con, FEB, transactions="my_tx").renewal_gap_days.tolist() == [5]
    con.execute(
        "CREATE TABLE labels (msno VARCHAR, target_month DATE, last_expire DATE, "
        "renewal_gap_days INTEGER, is_churn INTEGER)"
    )
    con.execute(f"INSERT INTO labels {labels_query('raw.transactions')}", {"target_month": FEB})
    assert con.execute("SELECT msno, renewal_gap_days, is_churn FROM labels").fetchall() == [("m", 5, 0)]


# ---------------------------------------------------------------- against a literal reading


def _reference_labels(rows, month: dt.date) -> dict[str, tuple[dt.date, int | None, int]]:
    """The rule step by step in plain Python (a per-member loop, fine for a few rows)."""

    def cmp(a, b):
        if a[6] != b[6]:
            return -1 if a[6] < b[6] else 1
        sa, sb = f"{a[3]}{a[2]}{a[1]}", f"{b[3]}{b[2]}{b[1]}"
        if sa != sb:
            return -1 if sa > sb else 1
        if a[8] != b[8]:
            return -1 if a[8] == 0 else 1  # renewal before cancellation
        if a[8] == 1:
            return (a[7] < b[7]) - (a[7] > b[7])  # cancellations: expiry descending
        return (a[7] > b[7]) - (a[7] < b[7])  # renewals: expiry ascending

    prev = (month - dt.timedelta(days=1)).replace(day=1)
    nxt = (month + dt.timedelta(days=32)).replace(day=1)
    # renewals are read up to the end of the month holding the month's last day + 29 days
    lookup_end = ((nxt - dt.timedelta(days=1) + dt.timedelta(days=29)).replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    out = {}
    for msno in {r[0] for r in rows}:
        mine = sorted((r for r in rows if r[0] == msno), key=functools.cmp_to_key(cmp))
        hist = [r for r in mine if prev <= r[6] < month]
        if not hist or not (month <= hist[-1][7] < nxt):
            continue
        last = expire = hist[-1][7]
        gap = None
        for r in (r for r in mine if month <= r[6] < lookup_end):
            if r[8] == 1:
                expire = min(expire, r[7])
            else:
                gap = (r[6] - expire).days
                break
        out[msno] = (last, gap, int(gap is None or gap >= 30))
    return out


def test_matches_literal_reading_on_random_histories(con):
    rng = random.Random(7)
    rows = []
    for i in range(800):
        for _ in range(rng.randint(1, 7)):
            date = dt.date(2016, 12, 20) + dt.timedelta(days=rng.randint(0, 110))
            rows.append(
                txn(
                    f"m{i:04d}",
                    date.isoformat(),
                    (date + dt.timedelta(days=rng.randint(-3, 45))).isoformat(),
                    cancel=int(rng.random() < 0.3),
                    price=rng.choice([99, 129, 149, 0]),
                    days=rng.choice([30, 7, 0]),
                    method=rng.choice([41, 38, 9]),
                )
            )
    load(con, rows)
    df = compute_labels(con, FEB)
    got = {
        r.msno: (r.last_expire.date(), None if pd.isna(r.renewal_gap_days) else int(r.renewal_gap_days), r.is_churn)
        for r in df.itertuples()
    }
    want = _reference_labels(rows, FEB)
    assert len(want) > 100 and 0 < sum(v[2] for v in want.values()) < len(want)
    assert got == want
