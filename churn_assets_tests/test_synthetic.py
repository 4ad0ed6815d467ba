"""The synthetic world: realism bands, the official label rule, the oracle, determinism, scenarios.

A 5k-member, 6-month world (2016-10..2017-03, channel_shift from 2017-02) is generated once;
the files are read back with DuckDB, so the checks are on what the pipeline will ingest.
"""

import datetime as dt
import filecmp
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn_assets.features.labels import compute_labels
from churn_assets.synthetic.simulator import (SCENARIOS, generate_world, label_targets, msno_array, parse_scenarios,
                                              scenario_arg)

WORLD = dict(members=5_000, start="2016-10", months=6, seed=7, progress=False)
SHIFT = ("channel_shift", "2017-02")
TARGETS = ["2016-11", "2016-12", "2017-01", "2017-02"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world")
    return out, generate_world(out, scenarios=[SHIFT], **WORLD)


@pytest.fixture(scope="module")
def con(world) -> duckdb.DuckDBPyConnection:
    out, _ = world
    land = out / "landing"
    c = duckdb.connect()
    ymd = "strptime(CAST({} AS VARCHAR), '%Y%m%d')::DATE"
    c.execute(f"""CREATE TABLE tx AS SELECT * REPLACE ({ymd.format('transaction_date')} AS transaction_date,
                                                   {ymd.format('membership_expire_date')} AS membership_expire_date),
                     regexp_extract(filename, '(\\d{{4}}-\\d{{2}})', 1) AS folder
              FROM read_csv('{land}/*/transactions_logs.csv', filename = true)""")
    c.execute(f"""CREATE TABLE logs AS SELECT *, regexp_extract(filename, '(\\d{{4}}-\\d{{2}})', 1) AS folder
              FROM read_csv('{land}/*/userlogs.csv', filename = true)""")
    c.execute(f"""CREATE TABLE members AS SELECT * FROM read_csv('{land}/2017-03/members_profile.csv',
              types = {{'gender': 'VARCHAR'}})""")
    c.execute(f"""CREATE TABLE churn AS SELECT msno, is_churn,
                     strptime(regexp_extract(filename, '(\\d{{4}}-\\d{{2}})', 1), '%Y-%m')::DATE AS target_month
              FROM read_csv('{land}/*/churn_logs.csv', filename = true)""")
    c.execute(f"CREATE TABLE oracle AS SELECT * FROM '{out}/oracle/renewals.parquet'")
    return c


def one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchone()[0]


def test_layout_and_summary(world):
    out, summary = world
    months = ["2016-10", "2016-11", "2016-12", "2017-01", "2017-02", "2017-03"]
    assert sorted(p.name for p in (out / "landing").iterdir()) == months
    for m in months:
        files = {p.name for p in (out / "landing" / m).iterdir()}
        base = {"members_profile.csv", "transactions_logs.csv", "userlogs.csv"}
        assert files == (base | {"churn_logs.csv"} if m in TARGETS else base)
    assert (out / "landing/2016-10/transactions_logs.csv").read_text().splitlines()[0] == (
        "msno,payment_method_id,payment_plan_days,plan_list_price,actual_amount_paid,is_auto_renew,"
        "transaction_date,membership_expire_date,is_cancel")
    assert (out / "landing/2016-10/userlogs.csv").read_text().splitlines()[0] == (
        "msno,date,num_25,num_50,num_75,num_985,num_100,num_unq,total_secs")
    assert (out / "landing/2016-10/members_profile.csv").read_text().splitlines()[0] == (
        "msno,city,bd,gender,registered_via,registration_init_time")
    assert summary["decision_rule_disagreements"] == 0
    assert summary["unmatched_candidates"] == 0
    assert sorted(summary["oracle_auc"]) == TARGETS
    assert summary["rows"]["userlogs"] > 100_000


def test_realism_bands(con):
    tx = con.execute("""SELECT avg((payment_plan_days = 30)::INT), avg(is_auto_renew), avg(is_cancel),
                           avg((payment_method_id = 41)::INT),
                           count(*) FILTER (WHERE membership_expire_date < transaction_date AND is_cancel = 1)
                    FROM tx""").fetchone()
    assert 0.83 <= tx[0] <= 0.93, tx
    assert 0.80 <= tx[1] <= 0.90, tx
    assert 0.02 <= tx[2] <= 0.06, tx
    assert tx[3] >= 0.5, tx
    assert tx[4] > 0, "some cancellations expire before their transaction date"
    mb = con.execute("""SELECT avg((gender IS NULL)::INT), avg((bd > 0 AND bd < 100)::INT),
                           avg((registered_via = 7)::INT), count(*) FILTER (WHERE registration_init_time > 20170331)
                    FROM members""").fetchone()
    assert 0.60 <= mb[0] <= 0.70, mb
    assert 0.25 <= mb[1] <= 0.40, mb
    assert 0.48 <= mb[2] <= 0.62, mb
    assert mb[3] > 0, "a few registration dates after the data end"
    for month, rate, no_row in con.execute("""
            SELECT target_month, avg(is_churn), avg((msno NOT IN (SELECT msno FROM members))::INT)
            FROM churn GROUP BY ALL""").fetchall():
        assert 0.05 <= rate <= 0.12, (month, rate)
        assert 0.08 <= no_row <= 0.16, (month, no_row)
    logs = con.execute("""SELECT median(total_secs) FILTER (WHERE abs(total_secs) < 1e15), avg(num_unq),
                             sum(num_100) / sum(num_25 + num_50 + num_75 + num_985 + num_100),
                             count(*) FILTER (WHERE abs(total_secs) > 9e15)
                      FROM logs""").fetchone()
    assert 1800 <= logs[0] <= 3000, logs
    assert 15 <= logs[1] <= 30, logs
    assert 0.60 <= logs[2] <= 0.75, logs
    assert logs[3] > 0, "some total_secs sentinels"


def test_churn_follows_the_published_signals(con):
    by_channel = dict(con.execute("SELECT registered_via, avg(is_churn) FROM churn JOIN members USING (msno) GROUP BY 1")
                      .fetchall())
    assert by_channel[7] < by_channel[9] < min(by_channel[3], by_channel[4])
    young, old = con.execute("""SELECT avg(is_churn) FILTER (WHERE bd < 25), avg(is_churn) FILTER (WHERE bd >= 25)
                            FROM churn JOIN members USING (msno) WHERE bd > 0 AND bd < 100""").fetchone()
    assert young > old


def test_files_are_well_formed(con):
    assert one(con, "SELECT count(*) FROM tx WHERE strftime(transaction_date, '%Y-%m') <> folder") == 0
    assert one(con, "SELECT count(*) FROM logs WHERE CAST(date // 100 AS VARCHAR) <> replace(folder, '-', '')") == 0
    assert one(con, "SELECT count(*) - count(DISTINCT (msno, date)) FROM logs") == 0
    assert one(con, "SELECT count(*) FROM logs WHERE num_unq > num_25 + num_50 + num_75 + num_985 + num_100") == 0
    assert one(con, "SELECT count(*) FROM tx WHERE actual_amount_paid > plan_list_price") == 0
    assert one(con, "SELECT count(*) - count(DISTINCT msno) FROM members") == 0
    assert one(con, "SELECT min(length(msno)) = 44 AND max(length(msno)) = 44 FROM members")
    # transactions of members who have no members row (about 12 % of labelled members)
    assert one(con, "SELECT count(DISTINCT msno) FROM tx WHERE msno NOT IN (SELECT msno FROM members)") > 0


def test_labels_match_the_official_rule_and_the_oracle(con):
    for target in TARGETS:
        month = dt.date.fromisoformat(target + "-01")
        ref = compute_labels(con, month, "tx")[["msno", "is_churn"]]
        got = con.execute(f"SELECT msno, is_churn FROM churn WHERE target_month = DATE '{month}' ORDER BY msno").df()
        assert len(ref) > 2_000
        pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True), check_dtype=False)
    assert one(con, "SELECT count(*) FROM oracle") == one(con, "SELECT count(*) FROM churn")
    assert one(con, """SELECT count(*) FROM oracle o JOIN churn c USING (msno, target_month)
                       WHERE o.is_churn = c.is_churn""") == one(con, "SELECT count(*) FROM churn")


def test_oracle_schema_and_auc(con):
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE oracle)").fetchall())
    assert list(types) == ["msno", "target_month", "last_expire", "true_churn_probability", "is_churn",
                           "action", "discount_pct", "p_untreated", "p_treated",
                           "p_call", "p_discount_10", "p_discount_20", "p_discount_30"]
    assert types["target_month"] == "DATE" and types["last_expire"] == "DATE"
    o = con.execute("SELECT * FROM oracle").df()
    matched = o["true_churn_probability"].notna()
    assert (o.loc[matched, "action"] == "none").all()             # an untreated world
    assert (o.loc[matched, "p_untreated"] == o.loc[matched, "p_treated"]).all()
    # the counterfactuals: an action in time would only have kept members, a deeper rung more
    m = o[matched]
    assert (m["p_call"] <= m["p_untreated"]).all() and (m["p_discount_30"] <= m["p_discount_10"]).all()
    assert (m["p_discount_10"] < m["p_untreated"]).mean() > 0.99
    assert o["true_churn_probability"].between(0, 1).all()
    for month, g in o.groupby("target_month"):
        auc = roc_auc_score(g["is_churn"], g["true_churn_probability"])
        assert 0.85 <= auc <= 0.95, (month, auc)
        # calibrated: the true probabilities average to the realised churn rate
        assert abs(g["true_churn_probability"].mean() - g["is_churn"].mean()) < 0.02


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    out, _ = world
    again = generate_world(tmp_path / "again", scenarios=[SHIFT], **WORLD)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for f in files:
        assert filecmp.cmp(out / f, tmp_path / "again" / f, shallow=False), f
    assert again["oracle_auc"] == world[1]["oracle_auc"]
    other = generate_world(tmp_path / "other", scenarios=[SHIFT], **{**WORLD, "seed": 8})
    assert not filecmp.cmp(out / "landing/2016-10/userlogs.csv", tmp_path / "other/landing/2016-10/userlogs.csv",
                           shallow=False)
    assert other["rows"] != world[1]["rows"]


def test_channel_shift_switches_on_at_its_month(world, con, tmp_path):
    out, _ = world
    generate_world(tmp_path / "none", scenarios=[("none", "2016-10")], **WORLD)
    for month in ("2016-10", "2016-11", "2016-12", "2017-01"):      # before the campaign: the same world
        for f in ("members_profile.csv", "transactions_logs.csv", "userlogs.csv"):
            assert filecmp.cmp(out / "landing" / month / f, tmp_path / "none/landing" / month / f, shallow=False)
    base = duckdb.connect()
    share = "avg((registered_via IN (3, 4, 9))::INT)"
    reg = "registration_init_time BETWEEN 20170201 AND 20170228"
    shifted = one(con, f"SELECT {share} FROM members WHERE {reg}")
    plain = one(base, f"SELECT {share} FROM '{tmp_path}/none/landing/2017-03/members_profile.csv' WHERE {reg}")
    assert shifted > plain + 0.2
    # the campaign's members pay differently: fewer on method 41 among February's new payers
    m41 = "avg((payment_method_id = 41)::INT)"
    assert one(con, f"SELECT {m41} FROM tx WHERE folder = '2017-02'") < one(
        base, f"SELECT {m41} FROM '{tmp_path}/none/landing/2017-02/transactions_logs.csv'") - 0.03


def test_engagement_drop_and_price_rise(tmp_path):
    small = dict(members=2_000, start="2016-10", months=5, seed=3, progress=False)
    generate_world(tmp_path / "base", scenarios=[], **small)
    generate_world(tmp_path / "drop", scenarios=[("engagement_drop", "2017-01")], **small)
    generate_world(tmp_path / "rise", scenarios=[("price_rise", "2017-01")], **small)
    c = duckdb.connect()

    def secs(world: str, month: str) -> float:
        return one(c, f"""SELECT sum(total_secs) FILTER (WHERE abs(total_secs) < 1e15)
                          FROM '{tmp_path}/{world}/landing/{month}/userlogs.csv'""")

    assert secs("drop", "2016-12") == secs("base", "2016-12")
    assert secs("drop", "2017-01") < 0.8 * secs("base", "2017-01")
    prices = "SELECT list(DISTINCT plan_list_price) FROM '{}' WHERE payment_plan_days = 30"
    before = set(one(c, prices.format(tmp_path / "rise/landing/2016-12/transactions_logs.csv")))
    after = set(one(c, prices.format(tmp_path / "rise/landing/2017-01/transactions_logs.csv")))
    assert {119, 159, 179} <= after and not {119, 159, 179} & before


def test_helpers():
    assert SCENARIOS == ("none", "channel_shift", "engagement_drop", "price_rise")
    assert parse_scenarios([("none", "2017-01"), ("price_rise", "2017-02")]) == {
        "price_rise": int(np.datetime64("2017-02-01").astype(np.int64))}
    with pytest.raises(ValueError):
        parse_scenarios([("meteor", "2017-01")])
    assert scenario_arg("price_rise@2017-03") == ("price_rise", "2017-03")
    for bad in ("price_rise", "meteor@2017-03", "price_rise@2017-13", "price_rise@17-03"):
        with pytest.raises(ValueError):
            scenario_arg(bad)
    # a January target needs the data to reach 1 March (29 days after 31 January)
    assert label_targets(np.datetime64("2016-12", "M") + np.arange(4)) == []
    assert label_targets(np.datetime64("2016-12", "M") + np.arange(5)) == [dt.date(2017, 1, 1), dt.date(2017, 2, 1)]
    ids = msno_array(np.random.default_rng(0), 1000).to_pylist()
    assert len(set(ids)) == 1000 and all(len(i) == 44 and i.endswith("=") for i in ids)
