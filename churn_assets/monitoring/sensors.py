"""drift_retrain_sensor: every drift / performance decision becomes at most one run.

A plain sensor over `instance.fetch_materializations` (an @asset_sensor would
only see the latest event since its last tick, and a backfill of six weeks
lands at once). Its cursor is JSON {asset key path: last storage id handled},
persisted by the instance with the tick, so a restart resumes after the last
handled event and never re-requests it.

Each materialisation of monitoring/drift_report or monitoring/model_performance
is read in storage-id order; its `decision` metadata picks the job:
'retrain' -> train_job, 'retune' -> retune_job, 'none' -> nothing. Several
decisions in one tick give one request each: the run key
`<asset>:<partition>:<storage id>` is unique per event, so the daemon launches
each once (and a re-materialised week, being a new event, can ask again).

One cool-down: a retrain on data the last retrain already had gives the same
model, so while no new drop has arrived (the newest raw/transactions partition,
tagged `churn/data_month`) each job is requested once; later events of the same
data month are read, logged and skipped. Each event is still seen exactly once.

Jobs are referred to by name; Dagster only lets a sensor request several jobs
when it is built with the job objects, so definitions.py passes them to
`build_drift_retrain_sensor` and this module never imports the model domain.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg

from .assets import DRIFT_REPORT_KEY, MODEL_PERFORMANCE_KEY

SENSOR_NAME = "drift_retrain_sensor"
TRAIN_JOB = "train_job"
RETUNE_JOB = "retune_job"
JOB_FOR_DECISION = {"retrain": TRAIN_JOB, "retune": RETUNE_JOB}
WATCHED = {DRIFT_REPORT_KEY: "churn/week", MODEL_PERFORMANCE_KEY: "churn/month"}  # asset -> partition tag
MAX_EVENTS_PER_TICK = 100  # per asset; the rest is picked up on the next tick
DATA_KEY = dg.AssetKey(["raw", "transactions"])
DATA_MONTH_TAG = "churn/data_month"


def _meta_value(metadata: dict, name: str):
    entry = metadata.get(name)
    return None if entry is None else entry.value


def run_request_for(asset_key: dg.AssetKey, partition: str | None, storage_id: int, metadata: dict) -> dg.RunRequest | None:
    """The run a materialisation asks for, or None ('none', or no decision recorded)."""
    decision = _meta_value(metadata, "decision")
    job = JOB_FOR_DECISION.get(decision)
    if job is None:
        return None
    asset = asset_key.to_user_string()
    tags = {"churn/trigger": SENSOR_NAME, WATCHED[asset_key]: partition or "", "churn/decision": decision,
            "churn/source_asset": asset}
    drift_share = _meta_value(metadata, "drift_share")
    if drift_share is not None:
        tags["churn/drift_share"] = f"{float(drift_share):.4f}"
    return dg.RunRequest(job_name=job, run_key=f"{asset}:{partition}:{storage_id}", tags=tags)


def newest_data_month(instance: dg.DagsterInstance) -> str:
    """The newest ingested drop: new training data exists only after it changes."""
    return max(instance.get_materialized_partitions(DATA_KEY), default="")


def _requested_before(instance: dg.DagsterInstance, job: str, data_month: str) -> bool:
    return bool(instance.get_run_records(dg.RunsFilter(job_name=job, tags={DATA_MONTH_TAG: data_month}), limit=1))


def evaluate_drift_events(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[dg.RunRequest], str, int]:
    """(run requests, new cursor, events read) for the materialisations after `cursor`."""
    seen: dict[str, int] = json.loads(cursor) if cursor else {}
    events = []
    for key in WATCHED:
        after = seen.get(key.to_user_string())
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=MAX_EVENTS_PER_TICK, ascending=True,
        ).records
        events += [(r.storage_id, key, r) for r in records]
        if records:
            seen[key.to_user_string()] = records[-1].storage_id
    requests, taken = [], set()
    data_month = newest_data_month(instance) if events else ""
    for storage_id, key, record in sorted(events, key=lambda e: e[0]):
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        request = run_request_for(key, record.partition_key, storage_id, metadata)
        if request is None:
            continue
        if data_month:  # cool-down (see above); without ingested data there is nothing to compare
            if (request.job_name, data_month) in taken or _requested_before(instance, request.job_name, data_month):
                continue
            taken.add((request.job_name, data_month))
            request = dg.RunRequest(job_name=request.job_name, run_key=request.run_key,
                                    tags={**request.tags, DATA_MONTH_TAG: data_month})
        requests.append(request)
    return requests, json.dumps(seen, sort_keys=True), len(events)


def _evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    requests, cursor, n_events = evaluate_drift_events(context.instance, context.cursor)
    for request in requests:
        context.log.info(f"{request.tags['churn/source_asset']} {request.run_key}: "
                         f"{request.tags['churn/decision']} -> {request.job_name}")
    skip = None if requests else f"{n_events} new monitoring decision(s), none asking for a run"
    return dg.SensorResult(run_requests=requests, cursor=cursor, skip_reason=skip)


def build_drift_retrain_sensor(jobs: Sequence[dg.JobDefinition | dg.UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    """The sensor, targeting the jobs named train_job and retune_job (pass both)."""
    names = sorted(job.name for job in jobs)
    if names != sorted(JOB_FOR_DECISION.values()):
        raise ValueError(f"drift_retrain_sensor needs the jobs {sorted(JOB_FOR_DECISION.values())}, got {names}")
    return dg.SensorDefinition(
        name=SENSOR_NAME,
        evaluation_fn=_evaluate,
        jobs=list(jobs),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="monitoring/drift_report or model_performance decided 'retrain' -> train_job, "
                    "'retune' -> retune_job; once per materialisation (cursor = last storage id per asset).",
    )
