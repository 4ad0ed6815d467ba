"""Weekly scoring assets on a hand-written raw world: the 30-day window edges, the
scores table contract, the report on disk, the failure paths and the schedule.

The model is a stub with the registered model's interface (predict_proba, contributions),
served by a StubRegistry resource; tests with the real registered model belong to the
end-to-end suite."""
from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.defs.keys import CHURN_SCORES, MARKETING_TREATMENTS, WEEKLY_REPORT
from churn_assets.defs.marketing.assets import marketing_assets
from churn_assets.defs.monitoring.assets import monitoring_assets
from churn_assets.defs.partitions import weekly_partitions
from churn_assets.defs.resources import ModelRegistry, Smtp, Storage, Warehouse
from churn_assets.defs.scoring import assets as scoring
from churn_assets.defs.scoring.config import ScoringConfig
from churn_assets.defs.scoring.jobs import scoring_jobs
from churn_assets.defs.scoring.schedules import scoring_schedules
from churn_assets.scoring.scores import SCORE_COLUMNS
from churn_assets_tests.stubs import StubRegistry
from churn_assets_tests.test_model_support import fresh_mlflow_store

WEEK = "2017-03-06"
MONDAY = dt.date(2017, 3, 6)
PASSWORD = "s3cr3t-Pa55word"
RAW_SCHEMA = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"


class StubModel:
    """p = 1 - days_to_expiry / 30: expiring today -> A, in 15 days -> B, in 29 days -> C."""

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return 1.0 - df["days_to_expiry"].to_numpy(float) / 30.0

    def contributions(self, df: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(0.0, index=df.index, columns=[*FEATURE_COLUMNS, "bias"])
        out["days_to_expiry"] = 1.0
        out["last_is_auto_renew"] = 0.5
        return out


def _txn(msno: str, date: str, expire: str, auto_renew: int = 0) -> tuple:
    t = dt.date.fromisoformat(date)
    return (msno, 41, 30, 149, 149, auto_renew, t, dt.date.fromisoformat(expire), 0, t.replace(day=1))


@pytest.fixture
def warehouse(data_dir) -> Warehouse:
    path = data_dir / "warehouse" / "churn.duckdb"
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    con.execute(RAW_SCHEMA.read_text())
    rows = [
        _txn("before", "2017-02-03", "2017-03-05"),   # expired the day before the week: out
        _txn("today", "2017-02-06", "2017-03-06"),    # expires on week_start: in
        _txn("mid", "2017-02-21", "2017-03-21"),      # 15 days: in
        _txn("day29", "2017-03-05", "2017-04-04"),    # week_start + 29: in
        _txn("day30", "2017-03-05", "2017-04-05"),    # week_start + 30: out
        _txn("future", "2017-03-06", "2017-03-20"),   # bought on week_start: not visible as of it
    ]
    con.executemany("INSERT INTO raw.transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()
    return Warehouse(database=str(path))


def _query(warehouse: Warehouse, sql: str) -> pd.DataFrame:
    with warehouse.get_connection() as con:
        return con.execute(sql).df()


def _resources(warehouse: Warehouse, data_dir: Path, version: str | None = "12", **more) -> dict:
    """The scoring assets' resources: the warehouse, the reports under data_dir, production
    version `version` serving StubModel (None: no production model), no SMTP."""
    registry = StubRegistry.serving(StubModel(), version) if version else StubRegistry()
    return {"warehouse": warehouse, "storage": Storage(data_dir=str(data_dir)), "registry": registry,
            "smtp": Smtp(), **more}


def _defs(warehouse: Warehouse, data_dir: Path) -> dg.Definitions:
    return dg.Definitions(
        assets=[*scoring.scoring_assets, *marketing_assets, *monitoring_assets],  # the job also runs drift
        jobs=scoring_jobs,
        schedules=scoring_schedules,
        resources=_resources(warehouse, data_dir),
    )


def _failure_message(result) -> str:
    [event] = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else "") + data.error.message


def test_window_edges(warehouse, instance):
    for _ in range(2):  # a re-run replaces the week, it does not append
        result = dg.materialize([scoring.scoring_features], partition_key=WEEK, instance=instance,
                                resources={"warehouse": warehouse})
        assert result.success
    features = _query(warehouse, "SELECT * FROM scoring.scoring_features ORDER BY msno")
    assert list(features["msno"]) == ["day29", "mid", "today"]
    assert list(features.columns[:4]) == ["week_start", "msno", "as_of", "membership_expire_date"]
    assert list(features.columns[4:]) == FEATURE_COLUMNS
    types = dict(_query(warehouse, "DESCRIBE scoring.scoring_features")[["column_name", "column_type"]].values)
    assert types["week_start"] == "DATE" and types["membership_expire_date"] == "DATE"


def test_weekly_job_scores_and_reports(warehouse, instance, data_dir):
    job = _defs(warehouse, data_dir).resolve_job_def("weekly_scoring_job")
    policy = {"a_threshold": 0.8, "b_threshold": 0.3, "discount_ladder": [0, 10],
              "uplift": {"B": {"0": 0.0, "10": 0.9}}}  # p = 0.5: 0.5*0.9*0.9 - 0.5*0.1 = 0.355 > 0
    config = {"ops": {"scoring__churn_scores": {"config": policy}}}
    # the stub model has no MLflow training reference, so the job's drift report is left out here
    result = job.execute_in_process(instance=instance, partition_key=WEEK, run_config=config,
                                    asset_selection=[a.key for a in [*scoring.scoring_assets, *marketing_assets]])
    assert result.success

    scores = _query(warehouse, "SELECT * FROM scoring.churn_scores ORDER BY msno")
    assert list(scores.columns) == SCORE_COLUMNS
    by_msno = scores.set_index("msno")
    assert list(by_msno.loc[["today", "mid", "day29"], "bucket"]) == ["A", "B", "C"]
    assert list(by_msno.loc[["today", "mid", "day29"], "days_to_expiry"]) == [0, 15, 29]
    assert by_msno.loc["today", "reason_1"] == "plan ends today"
    assert by_msno.loc["mid", "reason_2"] == "pays manually each month (no auto-renew)"  # never on auto-renew
    assert by_msno.loc["day29", ["reason_1", "reason_2", "reason_3"]].isna().all()
    assert (scores["model_version"] == "12").all()
    assert list(by_msno.loc[["today", "mid", "day29"], "discount_pct"]) == [0, 10, 0]

    meta = instance.get_latest_materialization_event(CHURN_SCORES).asset_materialization.metadata
    assert meta["bucket_A"].value == 1 and meta["model_version"].value == "12"
    assert meta["a_threshold"].value == 0.8

    treatments = _query(warehouse, "SELECT * FROM marketing.treatments ORDER BY msno")
    assert list(treatments["msno"]) == ["day29", "mid", "today"] and set(treatments["arm"]) == {"treated"}
    assert instance.get_latest_materialization_event(MARKETING_TREATMENTS) is not None
    out = data_dir / "reports" / "weekly" / WEEK
    csv = pd.read_csv(out / "at_risk_members.csv")
    assert list(csv["msno"]) == ["today", "mid", "day29"]  # the week's treated new contacts
    assert "plan ends today" in (out / "churn_report.html").read_text()
    report_meta = instance.get_latest_materialization_event(WEEKLY_REPORT).asset_materialization.metadata
    assert report_meta["emailed"].value is False


def test_no_production_model_is_a_clear_failure(warehouse, instance, data_dir):
    dg.materialize([scoring.scoring_features], partition_key=WEEK, instance=instance,
                   resources={"warehouse": warehouse})
    uri, artifacts = fresh_mlflow_store(data_dir / "mlflow")  # a real, empty registry
    result = dg.materialize([scoring.churn_scores], partition_key=WEEK, instance=instance, raise_on_error=False,
                            resources={**_resources(warehouse, data_dir),
                                       "registry": ModelRegistry(tracking_uri=uri, artifact_location=artifacts)})
    assert not result.success
    message = _failure_message(result)
    assert "No production churn model" in message and "no 'production' alias" in message


def test_assets_called_directly_with_stub_resources(warehouse, data_dir):
    with dg.build_asset_context(partition_key=WEEK, resources={"warehouse": warehouse}) as context:
        features = scoring.scoring_features(context)
    assert features.metadata["members"].value == 3
    with dg.build_asset_context(partition_key=WEEK, resources=_resources(warehouse, data_dir, version="5")) as context:
        result = scoring.churn_scores(context, config=ScoringConfig())
    meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert meta["model_version"] == "5" and meta["dagster/row_count"] == 3
    assert (meta["bucket_A"], meta["bucket_B"], meta["bucket_C"]) == (1, 1, 1)  # p = 1, 0.5, 0.03
    assert meta["a_threshold"] == 0.7 and meta["b_threshold"] == 0.3
    with dg.build_asset_context(partition_key=WEEK, resources=_resources(warehouse, data_dir, version=None)) as context:
        with pytest.raises(dg.Failure, match="No production churn model .*train and promote a model first"):
            scoring.churn_scores(context, config=ScoringConfig())


def test_smtp_failure_fails_the_asset_and_keeps_the_report(warehouse, instance, data_dir):
    dg.materialize([*scoring.scoring_assets[:2], *marketing_assets], partition_key=WEEK, instance=instance,
                   resources=_resources(warehouse, data_dir))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    smtp = Smtp(host="127.0.0.1", port=port, user="marketing", password=PASSWORD,
                        recipients="m@example.com", security="none", timeout_seconds=5)
    result = dg.materialize([scoring.weekly_churn_report], partition_key=WEEK, instance=instance,
                            resources=_resources(warehouse, data_dir, smtp=smtp), raise_on_error=False)
    assert not result.success
    message = _failure_message(result)
    assert f"127.0.0.1:{port}" in message and "connect failed" in message
    assert PASSWORD not in message
    logs = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert "connect failed" in logs and PASSWORD not in logs
    assert (data_dir / "reports" / "weekly" / WEEK / "churn_report.html").exists()


def test_schedule_scores_the_week_starting_that_monday(warehouse, instance, data_dir):
    defs = _defs(warehouse, data_dir)
    schedule = defs.resolve_schedule_def("weekly_scoring_schedule")
    assert schedule.cron_schedule == "0 6 * * 1"
    context = dg.build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def(),
        scheduled_execution_time=dt.datetime(2017, 3, 6, 6, tzinfo=dt.timezone.utc),
    )
    if weekly_partitions.end_offset >= 1:  # the week starting today is already a partition
        [request] = schedule.evaluate_tick(context).run_requests
        assert request.partition_key == WEEK
    else:  # not yet a partition: a clear error rather than scoring last week silently
        with pytest.raises(Exception, match="needs end_offset=1"):
            schedule.evaluate_tick(context)
