"""Point-in-time member features: hand-computed values, leakage, sentinels, the pandas
baseline and the weekly expiring-members window."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from benchmarks.pandas_features import build_member_features_pandas
from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, KEY_COLUMNS
from churn_assets.features.member_features import (
    build_member_features,
    expiring_members,
    features_query,
)

RAW_SCHEMA_SQL = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"
AS_OF = dt.date(2017, 3, 1)
D = dt.date
SENTINEL = -9.223372036854776e15

TX_COLS = ["msno", "payment_method_id", "payment_plan_days", "plan_list_price", "actual_amount_paid",
           "is_auto_renew", "transaction_date", "membership_expire_date", "is_cancel"]
LOG_COLS = ["msno", "date", "num_25", "num_50", "num_75", "num_985", "num_100", "num_unq", "total_secs"]
MEMBER_COLS = ["msno", "city", "bd", "gender", "registered_via", "registration_init_time", "snapshot_month"]


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(RAW_SCHEMA_SQL.read_text())
    return con


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple] | pd.DataFrame) -> None:
    cols = {"transactions": TX_COLS, "user_logs": LOG_COLS, "members": MEMBER_COLS}[table]
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=cols)
    if table != "members":  # partition_month: first day of the row's month
        date_col = "transaction_date" if table == "transactions" else "date"
        df = df.assign(partition_month=pd.to_datetime(df[date_col]).dt.to_period("M").dt.start_time)
    con.register("_rows", df)
    con.execute(f"INSERT INTO raw.{table} BY NAME SELECT * FROM _rows")
    con.unregister("_rows")


# ---------------------------------------------------------------- a hand-computed member

def _tiny_world() -> duckdb.DuckDBPyConnection:
    con = _con()
    _insert(con, "transactions", [
        # A: official order t1, t2, c1, c2, t3, t6, t5, t4 -> latest is the 129 cancellation t4.
        # On 2017-02-10 the signature '993038' sorts before '1293038' as a string (not as a
        # number), and on the same signature the renewal t5 comes before the cancel t4.
        ("A", 41, 30, 99, 99, 1, D(2016, 11, 30), D(2016, 12, 30), 0),  # t1, 91 days: outside windows
        ("A", 41, 30, 149, 149, 1, D(2016, 12, 1), D(2016, 12, 31), 0),  # t2, 90 days: first day in
        ("A", 41, 30, 149, 149, 1, D(2016, 12, 30), D(2016, 12, 29), 1),  # c1, 61 days: not in 60 d
        ("A", 41, 30, 149, 149, 0, D(2016, 12, 31), D(2016, 12, 30), 1),  # c2, 60 days: in 60 d
        ("A", 38, 30, 129, 99, 0, D(2017, 1, 15), D(2017, 2, 14), 0),    # t3
        ("A", 38, 30, 129, 129, 0, D(2017, 2, 10), D(2017, 2, 8), 1),    # t4 (expires before its date)
        ("A", 38, 30, 129, 129, 0, D(2017, 2, 10), D(2017, 3, 12), 0),   # t5
        ("A", 38, 30, 99, 99, 0, D(2017, 2, 10), D(2017, 3, 12), 0),     # t6
        # B: no logs, no profile, free plan, unknown payment method, nothing in 90 days;
        # the latest transaction still comes from all history (406 days back)
        ("B", None, 7, 0, 0, 0, D(2016, 1, 20), D(2016, 1, 27), 0),
        # E: only transactions from as_of on -> not in the default population
        ("E", 41, 30, 99, 99, 1, AS_OF, D(2017, 3, 31), 0),
    ])
    _insert(con, "user_logs", [
        ("A", D(2017, 2, 28), 1, 0, 0, 0, 9, 8, 3000.0),     # 1 day before as_of
        ("A", D(2017, 2, 28), 0, 0, 0, 0, 1, 1, 200.0),      # same day delivered twice
        ("A", D(2017, 2, 22), 0, 0, 0, 0, 10, 10, 2400.0),   # 7 days: last day of the 7-day window
        ("A", D(2017, 2, 20), 0, 5, 0, 0, 5, 9, SENTINEL),   # seconds neutralised, plays kept
        ("A", D(2017, 1, 31), 0, 0, 0, 0, 20, 15, 6000.0),   # 29 days
        ("A", D(2017, 1, 29), 0, 0, 0, 0, 4, 4, 1000.0),     # 31 days: outside 30-day window
        ("A", D(2016, 12, 1), 0, 0, 0, 0, 2, 2, 500.0),      # 90 days: last day of the window
        ("A", D(2016, 11, 30), 0, 0, 0, 0, 50, 50, 7000.0),  # 91 days: not read
    ])
    _insert(con, "members", [
        ("A", 5, 30, "male", 7, D(2016, 3, 1), D(2017, 2, 1)),
        ("A", 6, 31, "female", 9, D(2016, 3, 1), D(2017, 3, 1)),  # snapshot dated as_of: not used
        ("E", 1, 0, None, 4, D(2017, 3, 2), D(2017, 3, 1)),
    ])
    return con


def test_hand_computed_member():
    df = build_member_features(_tiny_world(), AS_OF)
    assert list(df.columns) == KEY_COLUMNS + FEATURE_COLUMNS
    assert df.msno.tolist() == ["A", "B"]
    a = df.iloc[0]
    expected = {
        "last_plan_days": 30, "last_list_price": 129, "last_amount_paid": 129,
        "last_discount_share": 0.0, "last_is_auto_renew": 0, "last_is_cancel": 1,
        "last_payment_method": "38", "days_to_expiry": -21, "days_since_last_txn": 19,
        "cancels_30d": 1, "cancels_60d": 2, "cancels_90d": 3, "n_txn_90d": 7,
        "auto_renew_share_90d": 2 / 7,
        # c2->t3, t3->t6, t6->t5 change; t2->c1->c2 and t5->t4 same plan; t1->t2 changes
        # but t1 lies outside the 90 days
        "n_plan_changes_90d": 3,
        "active_days_7d": 2, "active_days_30d": 4, "active_days_90d": 6,
        "secs_7d": 5600.0, "secs_14d": 5600.0, "secs_30d": 11600.0, "secs_90d": 13100.0,
        "unq_30d": 43, "plays_30d": 51, "completion_share_30d": 45 / 51,
        "secs_trend_7_30": (5600 / 7) / (11600 / 30), "days_since_last_log": 1,
        "age": 30, "gender": "male", "city": "5", "registered_via": "7",
        "registration_tenure_days": 365,
    }
    assert set(expected) == set(FEATURE_COLUMNS)
    for name, value in expected.items():
        assert a[name] == pytest.approx(value) if isinstance(value, float) else a[name] == value, name
    assert a.as_of == pd.Timestamp(AS_OF)
    assert a.membership_expire_date == pd.Timestamp(2017, 2, 8)

    b = df.iloc[1]
    assert b.last_payment_method is None and b.last_discount_share == 0.0
    assert b.membership_expire_date == pd.Timestamp(2016, 1, 27) and b.days_since_last_txn == 406
    assert b.n_plan_changes_90d == 0 and b.n_txn_90d == 0 and np.isnan(b.auto_renew_share_90d)
    for zero in ("active_days_90d", "secs_90d", "plays_30d", "unq_30d"):
        assert b[zero] == 0
    for null in ("completion_share_30d", "secs_trend_7_30", "days_since_last_log", "age",
                 "registration_tenure_days"):
        assert np.isnan(b[null]), null
    assert b.gender is None and b.city is None and b.registered_via is None


def test_dtypes_numeric_double_categorical_text():
    df = build_member_features(_tiny_world(), AS_OF)
    for col in FEATURE_COLUMNS:
        expected = object if col in CATEGORICAL_COLUMNS else np.float64
        assert df[col].dtype == expected, col


def test_given_population_and_future_registration():
    con = _tiny_world()
    con.execute("CREATE TABLE pop AS SELECT * FROM (VALUES ('E'), ('A'), ('Z'), ('A')) t(msno)")
    df = build_member_features(con, AS_OF, members="pop")
    assert df.msno.tolist() == ["A", "E", "Z"]
    e = df.set_index("msno").loc["E"]
    assert pd.isna(e.membership_expire_date) and np.isnan(e.days_to_expiry)
    assert np.isnan(e.registration_tenure_days)  # registered after as_of
    assert e.registered_via == "4" and np.isnan(e.age)
    # the population is only a filter: A's features are those of the full build
    full = build_member_features(con, AS_OF)
    pd.testing.assert_frame_equal(df[df.msno == "A"].reset_index(drop=True),
                                  full[full.msno == "A"].reset_index(drop=True))


def test_sentinel_and_out_of_range_seconds_not_summed():
    con = _con()
    _insert(con, "transactions", [("S", 41, 30, 99, 99, 1, D(2017, 2, 1), D(2017, 3, 3), 0)])
    _insert(con, "user_logs", [
        ("S", D(2017, 2, 27), 0, 0, 0, 0, 1, 1, SENTINEL),
        ("S", D(2017, 2, 26), 0, 0, 0, 0, 1, 1, 9.223372036854776e15),
        ("S", D(2017, 2, 25), 0, 0, 0, 0, 1, 1, -0.5),
        ("S", D(2017, 2, 24), 0, 0, 0, 0, 1, 1, 86400.5),
        ("S", D(2017, 2, 23), 0, 0, 0, 0, 1, 1, 86400.0),   # a full day is still sane
        ("S", D(2017, 2, 22), 0, 0, 0, 0, 1, 1, None),
    ])
    s = build_member_features(con, AS_OF).iloc[0]
    assert s.secs_7d == 86400.0 and s.secs_90d == 86400.0
    assert s.active_days_7d == 6 and s.plays_30d == 6  # the days and plays still count


# ---------------------------------------------------------------- random worlds

def _random_world(seed: int, n: int = 250) -> duckdb.DuckDBPyConnection:
    """Small world dense in edge cases: same-day ties, NULL codes, duplicate log days,
    sentinels, several profile snapshots, rows on both sides of AS_OF."""
    rng = np.random.default_rng(seed)
    ids = [f"m{i:04d}" for i in range(n)]
    k = n * 8
    tdate = pd.Timestamp(AS_OF) + pd.to_timedelta(rng.integers(-500, 40, k), unit="D")
    tdate = tdate.where(rng.random(k) > 0.3, pd.Timestamp(AS_OF) - pd.Timedelta(days=10))  # ties
    cancel = (rng.random(k) < 0.2).astype(int)
    price = rng.choice([99, 129, 149, 0, 1788], k)

    def maybe_null(values: np.ndarray, p: float = 0.05) -> pd.Series:
        return pd.Series(values).astype("Int64").mask(rng.random(len(values)) < p)

    tx = pd.DataFrame({
        "msno": rng.choice(ids, k),
        "payment_method_id": maybe_null(rng.choice([41, 38, 32, 35], k)),
        "payment_plan_days": maybe_null(rng.choice([30, 7, 410], k)),
        "plan_list_price": maybe_null(price),
        "actual_amount_paid": maybe_null(np.where(rng.random(k) < 0.8, price, price // 2)),
        "is_auto_renew": maybe_null(rng.integers(0, 2, k)),
        "transaction_date": tdate,
        "membership_expire_date": tdate + pd.to_timedelta(np.where(cancel == 1, -2, 30), unit="D")
        + pd.to_timedelta(rng.integers(0, 3, k), unit="D"),
        "is_cancel": maybe_null(cancel, 0.02),
    })
    m = n * 60
    ldate = pd.Timestamp(AS_OF) + pd.to_timedelta(rng.integers(-100, 5, m), unit="D")
    secs = rng.uniform(0, 20000, m)
    secs = np.where(rng.random(m) < 0.03, SENTINEL, secs)
    logs = pd.DataFrame({
        "msno": rng.choice(ids[: int(n * 0.8)], m),  # a fifth never listens
        "date": ldate,
        **{c: maybe_null(rng.integers(0, 20, m), 0.02) for c in LOG_COLS[2:8]},
        "total_secs": pd.Series(secs).mask(rng.random(m) < 0.02),
    })
    p = int(n * 0.9)
    members = pd.DataFrame({
        "msno": rng.choice(ids, p),  # some members have no row, some two snapshots
        "city": maybe_null(rng.integers(1, 22, p)),
        "bd": rng.choice([0, 25, 40, -3, 1951, 99, 100], p),
        "gender": rng.choice(np.array(["male", "female", None, ""], dtype=object), p),
        "registered_via": maybe_null(rng.choice([3, 4, 7, 9], p)),
        "registration_init_time": pd.Timestamp(AS_OF) + pd.to_timedelta(rng.integers(-3000, 60, p), unit="D"),
        "snapshot_month": rng.choice(pd.to_datetime(["2016-12-01", "2017-02-01", "2017-03-01", "2017-04-01"]), p),
    }).drop_duplicates(["msno", "snapshot_month"])  # a snapshot has one row per member
    con = _con()
    _insert(con, "transactions", tx)
    _insert(con, "user_logs", logs)
    _insert(con, "members", members)
    return con


def _pandas_features(con: duckdb.DuckDBPyConnection, as_of: dt.date, population=None) -> pd.DataFrame:
    tables = {t: con.sql(f"SELECT * FROM raw.{t}").df() for t in ("members", "transactions", "user_logs")}
    return build_member_features_pandas(tables["members"], tables["transactions"], tables["user_logs"],
                                        as_of, population)


@pytest.mark.parametrize("seed", [1, 2])
def test_matches_pandas_baseline(seed):
    con = _random_world(seed)
    duck = build_member_features(con, AS_OF)
    pand = _pandas_features(con, AS_OF)
    assert len(duck) > 200
    assert duck.n_plan_changes_90d.sum() > 0 and duck.last_payment_method.isna().any()
    assert (duck.cancels_30d < duck.cancels_60d).any() and (duck.cancels_60d < duck.cancels_90d).any()
    for frame in (duck, pand):  # align date resolutions before comparing
        frame[["as_of", "membership_expire_date"]] = frame[["as_of", "membership_expire_date"]].astype("datetime64[us]")
    pd.testing.assert_frame_equal(duck, pand, check_exact=False, rtol=1e-9)


def test_matches_pandas_baseline_for_a_population():
    con = _random_world(3)
    con.execute("CREATE TABLE pop AS SELECT msno FROM raw.members UNION ALL SELECT 'nobody'")
    duck = build_member_features(con, AS_OF, members="pop")
    pand = _pandas_features(con, AS_OF, con.sql("SELECT msno FROM pop").df().msno)
    for frame in (duck, pand):
        frame[["as_of", "membership_expire_date"]] = frame[["as_of", "membership_expire_date"]].astype("datetime64[us]")
    pd.testing.assert_frame_equal(duck, pand, check_exact=False, rtol=1e-9)


def test_point_in_time_rows_from_as_of_on_change_nothing():
    con = _random_world(4)
    before = build_member_features(con, AS_OF)
    msno = before.msno.iloc[0]
    _insert(con, "transactions", [
        (msno, 32, 410, 1788, 0, 0, AS_OF, D(2018, 4, 15), 1),           # on as_of
        (msno, 35, 7, 0, 0, 1, D(2017, 3, 20), D(2017, 3, 27), 0),
        ("newcomer", 41, 30, 99, 99, 1, AS_OF, D(2017, 3, 31), 0),
    ])
    _insert(con, "user_logs", [
        (msno, AS_OF, 100, 100, 100, 100, 100, 100, 80000.0),
        (msno, D(2017, 3, 2), 1, 1, 1, 1, 1, 1, 100.0),
        ("newcomer", AS_OF, 1, 1, 1, 1, 1, 1, 100.0),
    ])
    _insert(con, "members", [(msno, 99, 99, "female", 13, D(2017, 3, 1), D(2017, 3, 1)),
                             ("newcomer", 1, 20, "male", 7, D(2017, 3, 1), D(2017, 3, 1))])
    after = build_member_features(con, AS_OF)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    # the inserted rows are real data: a later as_of sees them
    later = build_member_features(con, D(2017, 3, 5))
    assert "newcomer" in set(later.msno)
    assert later.set_index("msno").loc[msno, "last_list_price"] == 1788


def test_no_feature_depends_on_history_beyond_90_days():
    """Where the data starts must not matter: cutting history older than 90 days changes
    no feature of a member whose latest transaction is inside the 90 days."""
    con = _random_world(6)
    full = build_member_features(con, AS_OF).set_index("msno")
    recent = full.days_since_last_txn <= 90
    assert recent.sum() > 100 and (~recent).sum() > 0
    con.execute("DELETE FROM raw.transactions WHERE transaction_date < $d", {"d": AS_OF - dt.timedelta(days=90)})
    con.execute("DELETE FROM raw.user_logs WHERE date < $d", {"d": AS_OF - dt.timedelta(days=90)})
    cut = build_member_features(con, AS_OF).set_index("msno")
    pd.testing.assert_frame_equal(cut, full[recent])
    # older members keep their latest transaction but have empty windows
    old = full[~recent]
    assert old.membership_expire_date.notna().all()
    assert (old[["cancels_90d", "n_txn_90d", "n_plan_changes_90d"]] == 0).all().all()
    assert old.auto_renew_share_90d.isna().all()


def test_features_query_runs_inside_duckdb():
    con = _random_world(5, n=60)
    con.execute("CREATE SCHEMA features")
    con.execute(f"CREATE TABLE features.member_features AS {features_query('raw', None)}", {"as_of": AS_OF})
    stored = con.sql("SELECT * FROM features.member_features ORDER BY msno").df()
    pd.testing.assert_frame_equal(stored, build_member_features(con, AS_OF))
    types = dict(con.sql("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_name = 'member_features'").fetchall())
    assert types["as_of"] == "DATE" and types["membership_expire_date"] == "DATE"
    assert types["city"] == "VARCHAR" and types["secs_30d"] == "DOUBLE"


@pytest.mark.parametrize("bad", ["pop; DROP TABLE raw.members", "a.b.c", "1pop", "pop--"])
def test_identifiers_are_validated(bad):
    con = _tiny_world()
    with pytest.raises(ValueError):
        build_member_features(con, AS_OF, members=bad)
    with pytest.raises(ValueError):
        build_member_features(con, AS_OF, raw_schema=bad)
    with pytest.raises(ValueError):
        expiring_members(con, AS_OF, AS_OF, raw_schema=bad)


# ---------------------------------------------------------------- weekly scoring population

def test_expiring_members_window_edges():
    start = D(2017, 3, 6)
    end = start + dt.timedelta(days=30)

    def renewal(msno: str, paid_on: dt.date, expires: dt.date, cancel: int = 0) -> tuple:
        return (msno, 41, 30, 99, 99, 1, paid_on, expires, cancel)

    con = _con()
    _insert(con, "transactions", [
        renewal("before", D(2017, 2, 4), start - dt.timedelta(days=1)),
        renewal("on_start", D(2017, 2, 5), start),
        renewal("plus_29", D(2017, 3, 1), start + dt.timedelta(days=29)),
        renewal("plus_30", D(2017, 3, 1), start + dt.timedelta(days=30)),
        # a renewal dated on start is not known yet: expiry stays start + 5
        renewal("renews_on_start", D(2017, 2, 9), start + dt.timedelta(days=5)),
        renewal("renews_on_start", start, start + dt.timedelta(days=35)),
        # a later cancellation pulls the expiry out of the window
        renewal("cancelled", D(2017, 2, 20), start + dt.timedelta(days=10)),
        renewal("cancelled", D(2017, 3, 2), D(2017, 3, 1), cancel=1),
        # same day: the cancellation is the latest row (renewal before cancellation)
        renewal("same_day", D(2017, 3, 3), start + dt.timedelta(days=40)),
        renewal("same_day", D(2017, 3, 3), start + dt.timedelta(days=3), cancel=1),
    ])
    got = expiring_members(con, start, end)
    assert list(got.columns) == ["msno", "membership_expire_date"]
    assert dict(zip(got.msno, got.membership_expire_date.dt.date)) == {
        "on_start": start,
        "plus_29": start + dt.timedelta(days=29),
        "renews_on_start": start + dt.timedelta(days=5),
        "same_day": start + dt.timedelta(days=3),
    }
    # consistent with the feature build's membership_expire_date
    feats = build_member_features(con, start).set_index("msno").membership_expire_date.dt.date
    assert all(feats[m] == e for m, e in zip(got.msno, got.membership_expire_date.dt.date))
