"""drift_retrain_sensor on a real test instance: a run only when it can change the model,
once per data window; the cursor survives restarts."""
from __future__ import annotations

import json

import dagster as dg
import pytest

from churn_assets.defs.keys import DRIFT_REPORT as DRIFT_REPORT_KEY, MODEL_PERFORMANCE as MODEL_PERFORMANCE_KEY
from churn_assets.defs.monitoring.sensors import build_drift_retrain_sensor


@dg.asset(key=["ml", "stub_model"])
def stub_model() -> None:
    return None


# stand-ins for the model domain's jobs: only their names matter to the sensor
train_job = dg.define_asset_job("train_job", selection=[stub_model])
retune_job = dg.define_asset_job("retune_job", selection=[stub_model])
sensor = build_drift_retrain_sensor([train_job, retune_job])
defs = dg.Definitions(assets=[stub_model], jobs=[train_job, retune_job], sensors=[sensor])


def report(instance, key, partition, decision, share=None, window="2017-02-01", learned="2017-01-01",
           production=None):
    """A monitoring materialisation as the assets write it: the decision, the newest final
    month a run could train on (`window`) and the newest month the judged model learned."""
    metadata = {"decision": dg.MetadataValue.text(decision),
                "trainable_through": dg.MetadataValue.text(window),
                "model_trained_through": dg.MetadataValue.text(learned)}
    if production is not None:
        metadata["production_trained_through"] = dg.MetadataValue.text(production)
    if share is not None:
        metadata["drift_share"] = dg.MetadataValue.float(share)
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata))


def tick(instance, cursor=None):
    sensor_def = defs.get_sensor_def("drift_retrain_sensor")
    return sensor_def.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def launch(instance, request, failed=False):
    """The requested run, as the daemon would have launched it; `failed`: it ended in failure
    (a blocking gate check refused the challenger)."""
    job = {"train_job": train_job, "retune_job": retune_job}[request.job_name]
    run = instance.create_run_for_job(job.resolve(asset_graph=defs.resolve_asset_graph()), tags=request.tags)
    if failed:
        instance.report_run_failed(run)
    return run


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_decisions_with_new_labels_become_one_run_per_job_and_window(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.0625)
    report(instance, DRIFT_REPORT_KEY, "2017-03-13", "none", 0.0)
    report(instance, DRIFT_REPORT_KEY, "2017-03-20", "retune", 0.1875)
    report(instance, MODEL_PERFORMANCE_KEY, "2017-02-01", "retrain")  # same window: train_job already asked
    result = tick(instance)
    requests = result.run_requests
    assert [(r.job_name, r.tags["churn/week"]) for r in requests] == [
        ("train_job", "2017-03-06"), ("retune_job", "2017-03-20")]
    first, retune = requests
    assert first.run_key.startswith("monitoring/drift_report:2017-03-06:")
    assert first.tags["churn/trigger"] == "drift_retrain_sensor" and first.tags["churn/data_window"] == "2017-02-01"
    assert first.tags["churn/decision"] == "retrain" and first.tags["churn/drift_share"] == "0.0625"
    assert retune.tags["churn/decision"] == "retune" and retune.tags["churn/drift_share"] == "0.1875"
    cursor = json.loads(result.cursor)
    assert set(cursor) == {"monitoring/drift_report", "monitoring/model_performance"}

    # restart: the persisted cursor means nothing is requested again
    again = tick(instance, result.cursor)
    assert not again.run_requests and again.cursor == result.cursor

    # a new final month: the next decision is picked up, and only it
    report(instance, DRIFT_REPORT_KEY, "2017-04-03", "retrain", 0.05, window="2017-03-01")
    later = tick(instance, again.cursor)
    assert [(r.tags["churn/week"], r.tags["churn/data_window"]) for r in later.run_requests] == [("2017-04-03", "2017-03-01")]


def test_no_run_when_production_already_learned_every_final_month(instance):
    """Drift with nothing new to learn: a retrain would rebuild the same model."""
    for week in ("2017-03-06", "2017-03-13"):
        report(instance, DRIFT_REPORT_KEY, week, "retrain", 0.08, window="2017-02-01", learned="2017-02-01")
    report(instance, DRIFT_REPORT_KEY, "2017-03-20", "retune", 0.3, window="2017-02-01", learned="2017-01-01",
           production="2017-02-01")  # scored by an older version; production has learned February since
    result = tick(instance)
    assert not result.run_requests
    assert "waiting for new labels" in result.skip_message


def test_a_refused_retrain_escalates_to_one_retune(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.08)
    first = tick(instance)
    assert [r.job_name for r in first.run_requests] == ["train_job"]
    launch(instance, first.run_requests[0], failed=True)  # the gate refused it
    for week in ("2017-03-13", "2017-03-20"):
        report(instance, DRIFT_REPORT_KEY, week, "retrain", 0.08)
    second = tick(instance, first.cursor)
    assert [(r.job_name, r.tags["churn/week"]) for r in second.run_requests] == [("retune_job", "2017-03-13")]
    launch(instance, second.run_requests[0])
    report(instance, DRIFT_REPORT_KEY, "2017-03-27", "retrain", 0.08)
    assert not tick(instance, second.cursor).run_requests  # at most one retune per window


def test_bad_realised_performance_of_a_model_that_learned_everything_retunes(instance):
    report(instance, MODEL_PERFORMANCE_KEY, "2017-02-01", "retrain", window="2017-02-01", learned="2017-02-01")
    result = tick(instance)
    assert [(r.job_name, r.tags["churn/month"]) for r in result.run_requests] == [("retune_job", "2017-02-01")]


def test_rematerialised_week_is_a_new_event_but_not_a_second_run(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.06)
    first = tick(instance)
    launch(instance, first.run_requests[0])
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retrain", 0.07)
    second = tick(instance, first.cursor)
    assert json.loads(second.cursor) != json.loads(first.cursor)  # the event was read
    assert not second.run_requests  # the window's retrain exists already


def test_backfill_of_six_weeks_handled_exactly_once(instance):
    weeks = ["2017-04-03", "2017-04-10", "2017-04-17", "2017-04-24", "2017-05-01", "2017-05-08"]
    for week in weeks:
        report(instance, DRIFT_REPORT_KEY, week, "retrain", 0.08, window="2017-03-01")
    result = tick(instance)
    assert [r.tags["churn/week"] for r in result.run_requests] == ["2017-04-03"]  # one per window
    assert all(r.job_name == "train_job" for r in result.run_requests)
    assert not tick(instance, result.cursor).run_requests


def test_none_only_skips_and_advances_cursor(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "none", 0.0)
    result = tick(instance)
    assert not result.run_requests and "none needing a run" in result.skip_message
    assert json.loads(result.cursor)["monitoring/drift_report"] > 0


def test_no_final_month_yet_asks_for_nothing(instance):
    report(instance, DRIFT_REPORT_KEY, "2017-03-06", "retune", 0.5, window="")
    assert not tick(instance).run_requests


def test_requires_both_jobs():
    with pytest.raises(ValueError):
        build_drift_retrain_sensor([train_job])
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
