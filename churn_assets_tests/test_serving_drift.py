"""monitoring/serving_drift: logged online requests against the answering model's training reference,
with the batch drift's steps and policy; its decision reaches drift_retrain_sensor like drift_report's.
A real DuckDB file and instance, the serving log on disk, a stub registry (no MLflow)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.defs.keys import SERVING_DRIFT as SERVING_DRIFT_KEY
from churn_assets.defs.monitoring.sensors import build_drift_retrain_sensor
from churn_assets.defs.monitoring.serving_drift import serving_drift
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.model.versions import TrainingEvidence
from churn_assets.monitoring import serving_drift as sd
from churn_assets.monitoring.drift_week import Calibration
from churn_assets.monitoring.serving_log import ServingLog, loggable_inputs
from churn_assets_tests.stubs import StubRegistry
from churn_assets_tests.toy_world import toy_month, write_toy_world

WEEKS = [dt.date(2017, 4, 3), dt.date(2017, 4, 10), dt.date(2017, 4, 17)]
VERSION = "4"
SHIFTED = ["secs_7d", "secs_14d", "secs_30d", "secs_90d", "last_list_price"]  # 5 of 32 columns


def reference() -> pd.DataFrame:
    """The version's training rows (no target_month: Evidently's default thresholds)."""
    return toy_month(dt.date(2017, 1, 1), 4000, seed=1)[FEATURE_COLUMNS]


def evidence() -> TrainingEvidence:
    rng = np.random.default_rng(0)
    return TrainingEvidence(metrics={}, baseline_metrics={}, reference_sample=reference(), feature_importance=None,
                            validation_predictions=pd.DataFrame({"churn_probability": rng.beta(2, 8, 2000)}),
                            tags={"trained_through": "2017-01-01"})


def traffic(week: dt.date, n: int, shift: bool, seed: int) -> pd.DataFrame:
    """Requests drawn from the reference's own distribution, or with SHIFTED moved."""
    frame = toy_month(dt.date(2017, 3, 1), n, seed=seed)[["msno", *FEATURE_COLUMNS]]
    if shift:
        frame[SHIFTED[:4]] = frame[SHIFTED[:4]] * 0.3  # listening collapsed
        frame["last_list_price"] = frame["last_list_price"] + 60
    frame["msno"] = [f"{week}-{i}" for i in range(n)]
    return frame


def log_week(root, week: dt.date, frame: pd.DataFrame, version: str = VERSION) -> None:
    """`frame` as requests of 100 rows during the week's Tuesday, as the server logs them."""
    at = pd.Timestamp(week, tz="UTC") + pd.Timedelta(days=1, hours=9)
    rng = np.random.default_rng(len(frame))
    with ServingLog(root, clock=lambda: at) as log:
        for start in range(0, len(frame), 100):
            batch = frame.iloc[start:start + 100]
            answer = pd.DataFrame({"churn_probability": rng.beta(2, 8, len(batch)), "bucket": "C", "action": "email"})
            log.append(loggable_inputs(batch), answer, version, at=at + pd.Timedelta(minutes=start // 100))


@dataclass
class Settings:  # the asset's config fields the steps read
    retrain_at: float = 0.01
    retune_at: float = 0.25
    hysteresis: float = 0.2
    render_html: str = "never"
    sample_size: int = 5000
    seed: int = 0
    num_method: str | None = None
    cat_method: str | None = None


def defaults(methods) -> Calibration:
    return Calibration(VERSION, None, 1.5, 5000, fresh=False)


# ---------------------------------------------------------------- the pure steps


def test_planted_shift_in_logged_requests_is_flagged_and_unshifted_traffic_is_quiet(tmp_path):
    log_week(tmp_path, WEEKS[0], traffic(WEEKS[0], 1500, shift=False, seed=2))
    log_week(tmp_path, WEEKS[1], traffic(WEEKS[1], 1500, shift=True, seed=3))
    quiet = sd.compare_week(sd.read_week(tmp_path, WEEKS[0]), evidence(), None, defaults, Settings(),
                            tmp_path / "q.html")
    assert quiet.value("status") == sd.COMPARED and quiet.value("n_requests") == 1500
    assert quiet.result.n_drifted == 0 and quiet.value("drift_share") == 0.0
    assert (quiet.value("level"), quiet.value("decision"), quiet.value("drifted_columns")) == ("none", "none", "")

    shifted = sd.compare_week(sd.read_week(tmp_path, WEEKS[1]), evidence(), None, defaults, Settings(),
                              tmp_path / "s.html")
    assert set(shifted.value("drifted_columns").split(",")) == set(SHIFTED)
    assert shifted.value("drift_share") == pytest.approx(len(SHIFTED) / len(FEATURE_COLUMNS))  # equal weights
    # the batch policy: a level must hold two weeks under the same version before it acts
    assert (shifted.value("level"), shifted.value("decision")) == ("retrain", "none")
    again = sd.compare_week(sd.read_week(tmp_path, WEEKS[1]), evidence(), shifted.row.iloc[0].to_dict(), defaults,
                            Settings(), tmp_path / "s.html")
    assert (again.value("previous_level"), again.value("decision")) == ("retrain", "retrain")
    other_version = {**shifted.row.iloc[0].to_dict(), "model_version": "3"}
    assert sd.compare_week(sd.read_week(tmp_path, WEEKS[1]), evidence(), other_version, defaults, Settings(),
                           tmp_path / "s.html").value("decision") == "none"


def test_only_training_like_rows_of_the_answering_version_are_compared(tmp_path):
    frame = traffic(WEEKS[0], 1000, shift=False, seed=4)
    frame.loc[frame.index[:200], "days_since_last_txn"] = 300.0  # a long plan bought long ago
    log_week(tmp_path, WEEKS[0], frame)
    log_week(tmp_path, WEEKS[0], traffic(WEEKS[0], 100, shift=True, seed=5), version="3")  # before a restart
    requests = sd.read_week(tmp_path, WEEKS[0])
    assert len(requests.logged) == 1100 and requests.version == VERSION
    assert len(requests.answered) == 1000 and len(requests.current) == 800
    assert sd.read_week(tmp_path, WEEKS[1]).logged.empty  # the window is Monday to Monday


# ---------------------------------------------------------------- the asset and the sensor


@dg.asset(key=["ml", "stub_model"])
def stub_model() -> None:
    return None


# stand-ins for the model domain's jobs: only their names matter to the sensor
train_job = dg.define_asset_job("train_job", selection=[stub_model])
retune_job = dg.define_asset_job("retune_job", selection=[stub_model])
sensor_defs = dg.Definitions(assets=[stub_model], jobs=[train_job, retune_job],
                             sensors=[build_drift_retrain_sensor([train_job, retune_job])])


@pytest.fixture
def world(tmp_path):
    """A warehouse whose newest trainable month (2017-03) is newer than what the model learned (2017-01)."""
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        write_toy_world(con, [dt.date(2017, m, 1) for m in (1, 2, 3)], 50, seed=3)
    return {"tmp": tmp_path, "logs": tmp_path / "serving_logs", "resources": {
        "warehouse": Warehouse(database=str(db)), "storage": Storage(data_dir=str(tmp_path)),
        "registry": StubRegistry.serving(None, VERSION, evidence())}}


def materialize(world, instance, week: dt.date, **config):
    result = dg.materialize([serving_drift], partition_key=week.isoformat(), resources=world["resources"],
                            instance=instance,
                            run_config={"ops": {serving_drift.op.name: {"config": {"min_requests": 300, **config}}}})
    assert result.success
    return result.asset_materializations_for_node(serving_drift.op.name)[0].metadata


def tick(instance, cursor=None):
    sensor = sensor_defs.get_sensor_def("drift_retrain_sensor")
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=sensor_defs))


def test_a_week_without_requests_writes_a_row_saying_so(world, instance):
    meta = materialize(world, instance, WEEKS[0])
    assert (meta["status"].value, meta["n_requests"].value, meta["decision"].value) == ("no requests", 0, "none")
    assert "drift_share" not in meta and meta["model_version"].value == VERSION  # production's, for the record
    log_week(world["logs"], WEEKS[1], traffic(WEEKS[1], 200, shift=True, seed=6))
    few = materialize(world, instance, WEEKS[1])
    assert (few["status"].value, few["n_requests"].value, few["decision"].value) == ("too few requests", 200, "none")
    with duckdb.connect(str(world["resources"]["warehouse"].database), read_only=True) as con:
        rows = con.execute(f"SELECT week_start, status, n_requests, decision FROM {sd.SERVING_DRIFT_TABLE} "
                           "ORDER BY week_start").fetchall()
    assert rows == [(WEEKS[0], "no requests", 0, "none"), (WEEKS[1], "too few requests", 200, "none")]
    assert not tick(instance).run_requests


def test_serving_drift_crossing_the_policy_requests_a_retrain_through_the_drift_sensor(world, instance):
    for week, seed in zip(WEEKS[:2], (7, 8)):
        log_week(world["logs"], week, traffic(week, 1200, shift=True, seed=seed))
    first = materialize(world, instance, WEEKS[0])
    assert (first["level"].value, first["decision"].value) == ("retrain", "none")  # one week is not enough
    assert first["drift_share"].value == pytest.approx(len(SHIFTED) / len(FEATURE_COLUMNS))
    assert first["trainable_through"].value == "2017-03-01" and first["model_trained_through"].value == "2017-01-01"
    assert not tick(instance).run_requests

    second = materialize(world, instance, WEEKS[1])
    assert (second["level"].value, second["decision"].value) == ("retrain", "retrain")
    html = world["tmp"] / "reports" / "drift" / "serving" / f"{WEEKS[1]}.html"
    assert second["report_path"].value == str(html) and html.exists()  # acting: Evidently's page
    result = tick(instance)
    assert [(r.job_name, r.tags["churn/week"]) for r in result.run_requests] == [("train_job", WEEKS[1].isoformat())]
    request = result.run_requests[0]
    assert request.tags["churn/source_asset"] == "monitoring/serving_drift"
    assert request.tags["churn/data_window"] == "2017-03-01" and request.tags["churn/decision"] == "retrain"
    assert request.run_key.startswith(f"monitoring/serving_drift:{WEEKS[1]}:")
    assert SERVING_DRIFT_KEY.to_user_string() in result.cursor
    assert not tick(instance, result.cursor).run_requests  # handled once

    with duckdb.connect(str(world["resources"]["warehouse"].database), read_only=True) as con:
        table = con.execute(f"SELECT * FROM {sd.SERVING_DRIFT_TABLE} ORDER BY week_start").df()
    assert table["decision"].tolist() == ["none", "retrain"] and (table["model_version"] == VERSION).all()
    assert set(table["drifted_columns"].iloc[1].split(",")) == set(SHIFTED)


def test_unshifted_traffic_stays_quiet_and_asks_for_nothing(world, instance):
    for week, seed in zip(WEEKS[:2], (9, 10)):
        log_week(world["logs"], week, traffic(week, 1200, shift=False, seed=seed))
        meta = materialize(world, instance, week)
        assert (meta["level"].value, meta["decision"].value, meta["drift_share"].value) == ("none", "none", 0.0)
    assert not tick(instance).run_requests


def test_schedule_checks_the_week_that_just_ended():
    """Monday 2017-03-13 07:00: the requests of 6-12 March are all logged, so that week runs."""
    import datetime as _dt

    import dagster as _dg

    from churn_assets.defs.monitoring.schedules import serving_drift_schedule

    assert serving_drift_schedule.cron_schedule == "0 7 * * 1"
    context = _dg.build_schedule_context(scheduled_execution_time=_dt.datetime(2017, 3, 13, 7, tzinfo=_dt.timezone.utc))
    request = serving_drift_schedule(context)
    assert request.partition_key == "2017-03-06" and request.run_key == "2017-03-06"
