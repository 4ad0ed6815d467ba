"""drift_retrain_sensor on a real test instance: one run per decision, cursor survives restarts."""
from __future__ import annotations

import json

import dagster as dg
import pytest

from churn_assets.monitoring.assets import DRIFT_REPORT_KEY, MODEL_PERFORMANCE_KEY
from churn_assets.monitoring.sensors import build_drift_retrain_sensor


@dg.asset(key=["ml", "stub_model"])
def stub_model() -> None:
    return None


# stand-ins for the model domain's jobs: only their names matter to the sensor
train_job = dg.define_asset_job("train_job", selection=[stub_model])
retune_job = dg.define_asset_job("retune_job", selection=[stub_model])
sensor = build_drift_retrain_sensor([train_job, retune_job])
defs = dg.Definitions(assets=[stub_model], jobs=[train_job, retune_job], sensors=[sensor])


def report(instance, key, partition, decision, share=None):
    metadata = {"decision": dg.MetadataValue.text(decision)}
    if share is not None:
        metadata["drift_share"] = dg.MetadataValue.float(share)
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata))


def tick(instance, cursor=None):
    sensor_def = defs.get_sensor_def("drift_retrain_sensor")
    return sensor_def.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_decisions_become_runs_once(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.0625)
    report(instance, DRIFT_REPORT_KEY, "2017-03-13", "none", 0.0)
    report(instance, DRIFT_REPORT_KEY, "2017-03-20", "retune", 0.1875)
    report(instance, MODEL_PERFORMANCE_KEY, "2017-02-01", "retrain")
    result = tick(instance)
    requests = result.run_requests
    assert [(r.job_name, r.tags.get("churn/week") or r.tags.get("churn/month")) for r in requests] == [
        ("train_job", "2017-03-06"), ("retune_job", "2017-03-20"), ("train_job", "2017-02-01"),
    ]
    first, retune, perf = requests
    assert first.run_key.startswith("monitoring/drift_report:2017-03-06:")
    assert first.tags["churn/trigger"] == "drift_retrain_sensor"
    assert first.tags["churn/decision"] == "retrain" and first.tags["churn/drift_share"] == "0.0625"
    assert retune.tags["churn/decision"] == "retune" and retune.tags["churn/drift_share"] == "0.1875"
    assert perf.run_key.startswith("monitoring/model_performance:2017-02-01:")
    assert "churn/drift_share" not in perf.tags and perf.tags["churn/decision"] == "retrain"
    assert len({r.run_key for r in requests}) == 3
    cursor = json.loads(result.cursor)
    assert set(cursor) == {"monitoring/drift_report", "monitoring/model_performance"}

    # restart: the persisted cursor means nothing is requested again
    again = tick(instance, result.cursor)
    assert not again.run_requests and again.cursor == result.cursor

    # a new week after the restart is picked up, and only it
    report(instance, DRIFT_REPORT_KEY, "2017-03-27", "retrain", 0.05)
    later = tick(instance, again.cursor)
    assert [r.tags["churn/week"] for r in later.run_requests] == ["2017-03-27"]


def test_rematerialised_week_asks_again_with_a_new_key(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.06)
    first = tick(instance)
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.07)
    second = tick(instance, first.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_backfill_of_six_weeks_handled_exactly_once(instance):
    weeks = ["2017-04-03", "2017-04-10", "2017-04-17", "2017-04-24", "2017-05-01", "2017-05-08"]
    for week in weeks:
        report(instance, DRIFT_REPORT_KEY, week, "retrain", 0.08)
    result = tick(instance)
    assert sorted(r.tags["churn/week"] for r in result.run_requests) == weeks
    assert all(r.job_name == "train_job" for r in result.run_requests)
    assert len({r.run_key for r in result.run_requests}) == 6
    assert not tick(instance, result.cursor).run_requests


def test_none_only_skips_and_advances_cursor(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "none", 0.0)
    result = tick(instance)
    assert not result.run_requests and "none asking for a run" in result.skip_message
    assert json.loads(result.cursor)["monitoring/drift_report"] > 0


def test_requires_both_jobs():
    with pytest.raises(ValueError):
        build_drift_retrain_sensor([train_job])
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_no_second_retrain_before_new_data_arrives(instance):
    """Cool-down: while the newest drop is the same, each job is requested once."""
    raw = dg.AssetKey(["raw", "transactions"])
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=raw, partition="2017-02-01"))
    for week in ("2017-02-06", "2017-02-13", "2017-02-20"):
        report(instance, DRIFT_REPORT_KEY, week, "retrain", 0.07)
    first = tick(instance)
    assert [(r.job_name, r.tags["churn/week"], r.tags["churn/data_month"]) for r in first.run_requests] == [
        ("train_job", "2017-02-06", "2017-02-01")]
    # the requested run exists on the instance (as the daemon would have launched it)
    instance.create_run_for_job(train_job.resolve(asset_graph=defs.resolve_asset_graph()),
                                tags=first.run_requests[0].tags)
    report(instance, DRIFT_REPORT_KEY, "2017-02-27", "retrain", 0.07)
    assert tick(instance, first.cursor).run_requests == []  # same data: skipped, cursor moves on
    # a new drop: the next drift decision may retrain again, and a retune is its own job
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=raw, partition="2017-03-01"))
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.07)
    report(instance, DRIFT_REPORT_KEY, "2017-03-13", "retune", 0.2)
    later = tick(instance, first.cursor)
    assert [(r.job_name, r.tags["churn/data_month"]) for r in later.run_requests] == [
        ("train_job", "2017-03-01"), ("retune_job", "2017-03-01")]
