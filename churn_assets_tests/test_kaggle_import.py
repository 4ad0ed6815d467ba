"""Splitting files in the public KKBox format into monthly landing drops."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from churn_assets.ingest.kaggle_import import import_kaggle
from churn_assets.ingest.loading import ensure_raw_schema, find_source_file, load_drop_file

TXN_HEADER = ("msno,payment_method_id,payment_plan_days,plan_list_price,actual_amount_paid,"
              "is_auto_renew,transaction_date,membership_expire_date,is_cancel")
LOG_HEADER = "msno,date,num_25,num_50,num_75,num_985,num_100,num_unq,total_secs"


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))


def _public_files(src: Path) -> None:
    src.mkdir()
    _write(src / "members_v3.csv", "msno,city,bd,gender,registered_via,registration_init_time",
           ["a,1,25,male,7,20150101", "b,5,0,,9,20160505"])
    _write(src / "transactions.csv", TXN_HEADER, [
        "a,41,30,149,149,1,20170105,20170205,0",
        "b,38,30,149,149,0,20170131,20170302,0",
        "a,41,30,149,149,1,20170205,20170305,0",
        "c,41,30,149,149,1,20161231,20170131,1",
        "d,41,30,149,149,1,2017XX05,20170305,0",  # no month: import_rejects
    ])
    _write(src / "transactions_v2.csv", TXN_HEADER, [
        "a,41,30,149,149,1,20170305,20170405,0",
        "e,41,30,99,99,1,20170228,20170330,0",
    ])
    _write(src / "user_logs.csv", LOG_HEADER, [
        "a,20170101,1,0,0,0,10,11,2400.5",
        "a,20170215,1,0,0,0,10,11,-9223372036854775.808",
        "b,20170228,2,0,0,0,5,6,300",
    ])
    _write(src / "user_logs_v2.csv", LOG_HEADER, ["a,20170301,1,0,0,0,10,11,1200", "x,20170331,1,0,0,0,1,1,60"])
    _write(src / "train.csv", "msno,is_churn", ["a,0", "b,1"])
    _write(src / "train_v2.csv", "msno,is_churn", ["a,0", "e,0", "b,1"])


def test_import_splits_by_month_with_seed_names(tmp_path, capsys):
    src, out = tmp_path / "kaggle", tmp_path / "data"
    _public_files(src)
    summary = import_kaggle(src, out, progress=True)

    assert summary["months"] == ["2016-12", "2017-01", "2017-02", "2017-03"]
    assert summary["rows"]["transactions"] == {"2016-12": 1, "2017-01": 2, "2017-02": 2, "2017-03": 1}
    assert summary["rows"]["user_logs"] == {"2017-01": 1, "2017-02": 2, "2017-03": 2}
    assert summary["rows"]["members"] == {"2017-03": 2}
    assert summary["rows"]["churn_labels"] == {"2017-02": 2, "2017-03": 3}
    assert summary["rejected"] == {"transactions": 1, "user_logs": 0}

    landing = out / "landing"
    feb = (landing / "2017-02" / "transactions_logs.csv").read_text().splitlines()
    assert feb[0] == TXN_HEADER  # text copied as is, partition column not written
    assert sorted(feb[1:]) == ["a,41,30,149,149,1,20170205,20170305,0", "e,41,30,99,99,1,20170228,20170330,0"]
    assert "-9223372036854775.808" in (landing / "2017-02" / "userlogs.csv").read_text()
    assert (landing / "2017-03" / "members_profile.csv").read_text() == (src / "members_v3.csv").read_text()
    assert not (landing / "2017-02" / "members_profile.csv").exists()
    assert (landing / "2017-02" / "churn_logs.csv").read_text() == (src / "train.csv").read_text()
    assert (landing / "2017-03" / "churn_logs.csv").read_text() == (src / "train_v2.csv").read_text()
    assert "2017XX05" in (out / "import_rejects" / "transactions_logs.csv").read_text()
    assert not list(out.glob(".split_*"))  # temporary partition folders removed
    err = capsys.readouterr().err
    assert "[import-kaggle] transactions: 6 rows into 4 months" in err and "done: 4 monthly drops" in err

    # The drops load cleanly: every row lands in the month of its folder.
    con = duckdb.connect()
    ensure_raw_schema(con)
    for month in summary["months"]:
        drop = landing / month
        for source in ("transactions", "user_logs", "churn_labels", "members"):
            f = find_source_file(drop, source)
            if f is not None:
                r = load_drop_file(con, source, f, dt.date.fromisoformat(month + "-01"))
                assert r.rows_quarantined == 0 and r.rows_loaded == summary["rows"][source][month]
    assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 6


def test_import_sets_malformed_lines_aside_and_is_rerunnable(tmp_path):
    src, out = tmp_path / "kaggle", tmp_path / "data"
    src.mkdir()
    _write(src / "user_logs_v2.csv", LOG_HEADER,
           ["a,20170301,1,0,0,0,10,11,1200", "broken,20170302", "b,20170302,1,0,0,0,10,11,60"])
    first = import_kaggle(src, out, progress=False)
    assert first["rows"] == {"user_logs": {"2017-03": 2}} and first["rejected"] == {"user_logs": 1}
    malformed = (out / "import_rejects" / "userlogs_malformed.csv").read_text()
    assert "broken,20170302" in malformed and ",3," in malformed  # file line 3
    again = import_kaggle(src, out, progress=False)
    assert again["rows"] == first["rows"]
    assert len((out / "landing" / "2017-03" / "userlogs.csv").read_text().splitlines()) == 3
