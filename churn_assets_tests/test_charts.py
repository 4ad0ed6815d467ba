"""The loop's charts: the history they draw is time-true (weeks up to a Monday, months final by
it), they come out as PNG, the weekly report embeds them showing only what its Monday knew,
and the demo summary writes them to files."""
from __future__ import annotations

import base64
import datetime as dt
import re

import dagster as dg
import duckdb
import pandas as pd

from churn_assets.defs.marketing.assets import marketing_assets
from churn_assets.defs.scoring import assets as scoring
from churn_assets.monitoring.charts import (
    AUC_CHART, BUCKET_CHART, DRIFT_CHART, RETENTION_CHART, TITLES, demo_charts, history_charts, report_charts,
)
from churn_assets.monitoring.history import find_oracle, monitoring_history, oracle_history
from churn_assets.settings import Paths
from churn_assets_tests.test_scoring_assets import MONDAY, WEEK, _resources, warehouse  # noqa: F401 (fixture)

PNG = b"\x89PNG\r\n\x1a\n"
WEEKS = [dt.date(2017, 2, 27), MONDAY, dt.date(2017, 3, 13)]  # the last one after the report's Monday
JANUARY, FEBRUARY = dt.date(2017, 1, 1), dt.date(2017, 2, 1)  # final on 2017-03-02 and 2017-03-30


def _monitoring_tables(con: duckdb.DuckDBPyConnection, scores: bool = True) -> None:
    drift = pd.DataFrame({"week_start": WEEKS, "model_version": "12", "drift_share": [0.0, 0.02, 0.4],
                          "n_drifted": [0, 1, 9], "n_columns": 32, "decision": ["none", "retrain", "retune"]})
    perf = pd.DataFrame({"target_month": [JANUARY, JANUARY, FEBRUARY], "model_version": "12",
                         "lead_band": ["first_score", "0-6", "first_score"], "n_scored": 500,
                         "auc": [0.74, 0.99, 0.70], "log_loss": 0.4, "valid_auc": 0.78, "valid_log_loss": 0.38})
    con.execute("CREATE SCHEMA IF NOT EXISTS monitoring")
    con.execute("CREATE TABLE monitoring.drift_reports AS SELECT * FROM drift")
    con.execute("CREATE TABLE monitoring.model_performance AS SELECT * FROM perf")
    if scores:
        rows = pd.DataFrame({"week_start": [w for w in WEEKS for _ in range(6)], "msno": [f"m{i}" for i in range(18)],
                             "bucket": list("AABBCC") * 3, "churn_probability": 0.5, "model_version": "12"})
        con.execute("CREATE SCHEMA IF NOT EXISTS scoring")
        con.execute("CREATE TABLE scoring.churn_scores AS SELECT * FROM rows")


def test_history_is_what_the_monday_knew():
    con = duckdb.connect()
    _monitoring_tables(con)
    seen = monitoring_history(con, through=MONDAY)
    assert list(seen.drift["week_start"].dt.date) == WEEKS[:2]
    assert sorted(set(seen.buckets["week_start"].dt.date)) == WEEKS[:2]
    assert list(seen.performance["target_month"].dt.date) == [JANUARY]  # February is final on 03-30
    assert list(seen.performance["auc"]) == [0.74]  # the headline, not the 0-6 band
    everything = monitoring_history(con)
    assert len(everything.drift) == 3 and list(everything.performance["target_month"].dt.date) == [JANUARY, FEBRUARY]
    assert seen.oracle.empty  # no oracle given


def test_charts_are_pngs_with_what_they_cover():
    con = duckdb.connect()
    _monitoring_tables(con)
    charts = history_charts(monitoring_history(con, through=MONDAY))
    assert list(charts) == [DRIFT_CHART, BUCKET_CHART, AUC_CHART, RETENTION_CHART]
    assert all(c.png.startswith(PNG) and c.title == TITLES[name] for name, c in charts.items())
    assert charts[DRIFT_CHART].caption == "2 week(s), 2017-02-27 to 2017-03-06; 1 with a decision to act"
    assert charts[BUCKET_CHART].caption == "2 week(s), 2017-02-27 to 2017-03-06"
    assert charts[AUC_CHART].caption.startswith("months with final labels: 2017-01; no oracle")
    later = history_charts(monitoring_history(con, through=WEEKS[2]))
    assert later[DRIFT_CHART].png != charts[DRIFT_CHART].png  # the later week is drawn only later
    empty = history_charts(monitoring_history(duckdb.connect()))
    assert all(c.png.startswith(PNG) for c in empty.values())
    assert empty[DRIFT_CHART].caption == "no week yet; 0 with a decision to act"
    assert empty[RETENTION_CHART].caption == "months measured: none yet"


def test_the_reduction_chart_shows_only_months_final_by_the_week():
    from churn_assets.marketing.effect import SUMMARY_COLUMNS
    from churn_assets.marketing.queries import EFFECT_TABLE
    from churn_assets.sql import replace_partition

    con = duckdb.connect()
    for month in (dt.date(2017, 1, 1), dt.date(2017, 2, 1)):   # final on 2 and 30 March
        row = pd.DataFrame({c: [0.05] for c in SUMMARY_COLUMNS if c != "target_month"}).assign(
            target_month=month, level="month")
        replace_partition(con, EFFECT_TABLE, row, "target_month", month, dates=["target_month"])
    march = history_charts(monitoring_history(con, through=dt.date(2017, 3, 6)))[RETENTION_CHART]
    april = history_charts(monitoring_history(con, through=dt.date(2017, 4, 3)))[RETENTION_CHART]
    assert march.caption == "months measured: 2017-01" and april.caption == "months measured: 2017-01, 2017-02"
    assert march.png.startswith(PNG) and march.png != april.png


def test_the_oracle_is_found_and_compared_on_final_months_only(tmp_path):
    paths = Paths(tmp_path)
    assert find_oracle(paths) is None  # a real deployment
    oracle = tmp_path / "synthetic" / "oracle" / "renewals.parquet"
    oracle.parent.mkdir(parents=True)
    members = [f"m{i}" for i in range(40)]
    is_churn = [i % 4 == 0 for i in range(40)]
    pd.DataFrame({"msno": members * 2, "target_month": [pd.Timestamp(JANUARY)] * 40 + [pd.Timestamp(FEBRUARY)] * 40,
                  "last_expire": pd.Timestamp("2017-01-25"), "true_churn_probability": [0.9 if c else 0.1 for c in is_churn] * 2,
                  "is_churn": is_churn * 2}).to_parquet(oracle)
    assert find_oracle(paths) == oracle  # the demo's stepped world
    con = duckdb.connect()
    labels = pd.DataFrame({"msno": members * 2, "target_month": [JANUARY] * 40 + [FEBRUARY] * 40,
                           "last_expire": [dt.date(2017, 1, 25)] * 40 + [dt.date(2017, 2, 25)] * 40,
                           "is_churn": [int(c) for c in is_churn] * 2})
    scores = pd.DataFrame({"week_start": [dt.date(2016, 12, 26)] * 40 + [dt.date(2017, 1, 30)] * 40,
                           "msno": members * 2, "membership_expire_date": labels["last_expire"],
                           "churn_probability": [0.6 if i % 3 == 0 else 0.2 for i in range(40)] * 2,
                           "model_version": "12"})
    con.execute("CREATE SCHEMA features; CREATE TABLE features.labels AS SELECT * FROM labels")
    con.execute("CREATE SCHEMA scoring; CREATE TABLE scoring.churn_scores AS SELECT * FROM scores")
    compared = oracle_history(con, oracle, through=MONDAY)
    assert list(compared["target_month"].dt.date) == [JANUARY] and compared["oracle_auc"].iloc[0] == 1.0
    assert len(oracle_history(con, oracle)) == 2


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_weekly_report_embeds_the_charts_of_weeks_up_to_its_monday(warehouse, instance, data_dir):
    resources = _resources(warehouse, data_dir)
    dg.materialize([*scoring.scoring_assets[:2], *marketing_assets], partition_key=WEEK, instance=instance,
                   resources=resources)
    with warehouse.get_connection() as con:
        _monitoring_tables(con, scores=False)
        con.execute("INSERT INTO scoring.churn_scores BY NAME SELECT DATE '2017-03-13' AS week_start, "
                    "msno || '_later' AS msno, bucket, churn_probability, model_version FROM scoring.churn_scores")
    assert dg.materialize([scoring.weekly_churn_report], partition_key=WEEK, instance=instance,
                          resources=resources).success

    page = (data_dir / "reports" / "weekly" / WEEK / "churn_report.html").read_text()
    images = _images(page)
    assert len(images) == 5 and all(i.startswith(PNG) for i in images)  # the histogram, then the four charts
    with warehouse.get_connection() as con:
        expected = report_charts(con, MONDAY, Paths(data_dir))
        later = report_charts(con, WEEKS[2], Paths(data_dir))
    assert images[1:] == [c.png for c in expected]  # what the Monday knew...
    assert [c.png for c in later][:2] != images[1:3]  # ...not the week after it
    assert "Monitoring over time" in page and "As known on 2017-03-06" in page
    assert "2 week(s), 2017-02-27 to 2017-03-06; 1 with a decision to act" in page
    assert "1 week(s), 2017-03-06 to 2017-03-06" in page  # bucket volumes: the scored week, not 03-13
    assert "months with final labels: 2017-01;" in page


def test_demo_charts_are_written_as_files(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    assert demo_charts(db, tmp_path / "demo") == {}  # no warehouse yet
    with duckdb.connect(str(db)) as con:
        _monitoring_tables(con)
    oracle = pd.DataFrame({"target_month": [pd.Timestamp(JANUARY), pd.Timestamp(JANUARY)], "lead_band": ["first_score", "0-6"],
                           "n_pairs": 500, "model_auc": [0.74, 0.99], "oracle_auc": [0.8, 0.8]})
    written = demo_charts(db, tmp_path / "reports" / "demo", oracle)
    assert list(written) == [DRIFT_CHART, BUCKET_CHART, AUC_CHART, RETENTION_CHART]
    assert all(p.parent == tmp_path / "reports" / "demo" and p.read_bytes().startswith(PNG) for p in written.values())

