"""GX suites on raw frames (real GX ephemeral context) and the column profile / preview helpers."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.ingest.loading import ensure_raw_schema, load_drop_file, read_raw_partition
from churn_assets.ingest.profiling import column_profile, markdown_preview
from churn_assets.ingest.quality import BLOCKING, WARNING, validate_raw

MARCH = dt.date(2017, 3, 1)


def _transactions(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    date = pd.Timestamp("2017-03-01") + pd.to_timedelta(rng.integers(0, 31, n), unit="D")
    return pd.DataFrame({
        "msno": [f"m{i}" for i in range(n)],
        "payment_method_id": rng.choice([41, 38, 36], n),
        "payment_plan_days": np.full(n, 30),
        "plan_list_price": np.full(n, 149),
        "actual_amount_paid": np.full(n, 149),
        "is_auto_renew": rng.integers(0, 2, n),
        "transaction_date": date,
        "membership_expire_date": date + pd.Timedelta(days=30),
        "is_cancel": np.zeros(n, dtype=int),
        "partition_month": pd.Timestamp(MARCH),
    })


def _failures(result) -> dict[tuple[str, str | None], dict]:
    return {(f["expectation"], f["column"]): f for f in result.failures}


def test_clean_frames_pass():
    r = validate_raw("transactions", _transactions())
    assert r.passed_blocking and r.passed_warning and r.failures == []
    assert r.n_expectations == 18 and r.n_rows == 200
    labels = pd.DataFrame({"msno": ["a", "b", "c"], "target_month": pd.Timestamp(MARCH), "is_churn": [0, 1, 0]})
    assert validate_raw("churn_labels", labels).passed_blocking


def test_corrupted_labels_fail_blocking_with_counts():
    labels = pd.DataFrame({
        "msno": ["a", None, "c", "d", None, "f", "g", "h"],
        "target_month": pd.Timestamp(MARCH),
        "is_churn": [0, 1, 2, 7, 0, 1, 0, None],
    })
    r = validate_raw("churn_labels", labels)
    assert not r.passed_blocking and r.passed_warning
    f = _failures(r)
    assert f[("expect_column_values_to_not_be_null", "msno")]["unexpected_count"] == 2
    assert f[("expect_column_values_to_not_be_null", "msno")]["unexpected_percent"] == pytest.approx(25.0)
    assert f[("expect_column_values_to_be_in_set", "is_churn")]["unexpected_count"] == 2
    assert f[("expect_column_values_to_not_be_null", "is_churn")]["unexpected_count"] == 1
    assert all(x["severity"] == BLOCKING for x in r.failures)
    assert "BLOCKING FAILURES" in r.markdown and "| blocking | expect_column_values_to_be_in_set | is_churn | 2 |" \
        in r.markdown


def test_quirks_only_warn():
    tx = _transactions()
    tx.loc[:19, "membership_expire_date"] = tx.loc[:19, "transaction_date"] - pd.Timedelta(days=2)  # 10 %
    tx.loc[:4, "payment_method_id"] = 99
    r = validate_raw("transactions", tx)
    assert r.passed_blocking and not r.passed_warning
    f = _failures(r)
    assert f[("expect_column_pair_values_a_to_be_greater_than_b",
              "membership_expire_date,transaction_date")]["unexpected_count"] == 20
    assert f[("expect_column_values_to_be_in_set", "payment_method_id")]["unexpected_count"] == 5
    assert {x["severity"] for x in r.failures} == {WARNING}

    tx.loc[0, "payment_plan_days"] = -30  # a negative plan length is blocking
    assert not validate_raw("transactions", tx).passed_blocking


def test_user_logs_sentinels_warn_above_one_percent_and_empty_frame_blocks():
    n = 1000
    logs = pd.DataFrame({
        "msno": [f"m{i}" for i in range(n)], "date": pd.Timestamp("2017-03-05"),
        **{c: 1 for c in ["num_25", "num_50", "num_75", "num_985", "num_100", "num_unq"]},
        "total_secs": np.full(n, 2400.0), "partition_month": pd.Timestamp(MARCH),
    })
    logs.loc[:5, "total_secs"] = -9.2e15  # 0.6 %: within mostly=0.99
    assert validate_raw("user_logs", logs).passed_warning
    logs.loc[:30, "total_secs"] = 9.2e15  # 3.1 %
    r = validate_raw("user_logs", logs)
    assert r.passed_blocking and not r.passed_warning
    assert _failures(r)[("expect_column_values_to_be_between", "total_secs")]["unexpected_count"] == 31

    empty = validate_raw("user_logs", logs.iloc[:0])
    assert not empty.passed_blocking
    assert ("expect_table_row_count_to_be_between", None) in _failures(empty)


def test_missing_column_is_blocking():
    r = validate_raw("transactions", _transactions().drop(columns=["is_cancel"]))
    assert not r.passed_blocking
    assert _failures(r)[("expect_column_to_exist", "is_cancel")]["severity"] == BLOCKING


def test_members_frame_from_duckdb(tmp_path):
    con = duckdb.connect()
    ensure_raw_schema(con)
    rows = ["a,1,25,male,7,20150101", "b,1,0,,9,20160101", "c,5,1998,female,3,20190101", "d,1,30,,7,20140101"]
    f = tmp_path / "members_profile.csv"
    f.write_text("msno,city,bd,gender,registered_via,registration_init_time\n" + "\n".join(rows) + "\n")
    load_drop_file(con, "members", f, MARCH)
    r = validate_raw("members", read_raw_partition(con, "members", MARCH))
    assert r.passed_blocking and not r.passed_warning  # 1 of 4 ages out of range: a warning
    assert _failures(r)[("expect_column_values_to_be_between", "bd")]["unexpected_count"] == 1

    prof = column_profile(con, "raw.members", "snapshot_month = ?", [MARCH]).set_index("column")
    assert prof.loc["bd", "max"] == "1998" and prof.loc["bd", "mean"] == pytest.approx((25 + 0 + 1998 + 30) / 4)
    assert prof.loc["gender", "nulls"] == 2 and prof.loc["gender", "null_share"] == 0.5
    assert prof.loc["msno", "distinct"] == 4 and pd.isna(prof.loc["msno", "mean"])
    assert prof.loc["registration_init_time", "min"] == "2014-01-01"
    assert column_profile(con, "raw.members", "snapshot_month = $m", {"m": dt.date(2017, 4, 1)})["rows"].eq(0).all()
    with pytest.raises(ValueError):
        column_profile(con, "raw.members; DROP TABLE raw.members", None, None)

    md = markdown_preview(read_raw_partition(con, "members", MARCH).sort_values("msno"), n=2)
    lines = md.splitlines()
    assert lines[0] == "| msno | city | bd | gender | registered_via | registration_init_time | snapshot_month |"
    assert lines[2] == "| a | 1 | 25 | male | 7 | 2015-01-01 | 2017-03-01 |"
    assert lines[-1] == "_2 of 4 rows_"
