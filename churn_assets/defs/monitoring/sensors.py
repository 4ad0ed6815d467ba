"""drift_retrain_sensor: a monitoring decision becomes a run only when the run can change something.

A plain sensor over `instance.fetch_materializations` (an @asset_sensor would
only see the latest event since its last tick, and a backfill of six weeks
lands at once). Its cursor is JSON {asset key path: last storage id handled},
persisted by the instance with the tick, so a restart resumes after the last
handled event and never re-requests it.

Each materialisation of monitoring/drift_report, monitoring/serving_drift (the
logged online requests, judged by the same policy) or monitoring/model_performance
is read in storage-id order; its `decision` metadata asks for a job
('retrain' -> train_job, 'retune' -> retune_job). Whether the job is requested
depends on what it could learn, from the event's own metadata:
`trainable_through` (the newest final labelled month a run could train on now),
`production_trained_through` (the newest month the production model learned) and
`model_trained_through` (the same for the version the event judged):

- new final labels since the model's training: the decision's job, once per
  data window (runs are tagged `churn/data_window`);
- nothing new to learn: a retrain would only rebuild the same model, so none is
  requested, except that the loop escalates to one retune_job per window when a
  retrain on this window was refused by the gate (or failed), or when realised
  performance is still bad for a model that already learned every final month.

The run key `<asset>:<partition>:<storage id>` is unique per event, so the
daemon launches each request once. Jobs are referred to by name; Dagster only
lets a sensor request several jobs when it is built with the job objects, so
definitions.py passes them to `build_drift_retrain_sensor` and this module
never imports the model domain.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg

from churn_assets.defs.keys import DRIFT_REPORT, MODEL_PERFORMANCE, SERVING_DRIFT
from churn_assets.defs.keys import PRODUCTION_MODEL as PRODUCTION_MODEL_KEY

SENSOR_NAME = "drift_retrain_sensor"
TRAIN_JOB = "train_job"
RETUNE_JOB = "retune_job"
JOB_FOR_DECISION = {"retrain": TRAIN_JOB, "retune": RETUNE_JOB}
WATCHED = {DRIFT_REPORT: "churn/week", MODEL_PERFORMANCE: "churn/month", SERVING_DRIFT: "churn/week"}  # asset -> partition tag
MAX_EVENTS_PER_TICK = 100  # per asset; the rest is picked up on the next tick
DATA_WINDOW_TAG = "churn/data_window"


def _meta_value(metadata: dict, name: str):
    entry = metadata.get(name)
    return None if entry is None else entry.value


def run_request_for(asset_key: dg.AssetKey, partition: str | None, storage_id: int, metadata: dict,
                    job: str | None = None) -> dg.RunRequest | None:
    """The run a materialisation's decision asks for (`job` overrides the decision's job),
    or None ('none', or no decision recorded)."""
    decision = _meta_value(metadata, "decision")
    job = job or JOB_FOR_DECISION.get(decision)
    if job is None or decision not in JOB_FOR_DECISION:
        return None
    asset = asset_key.to_user_string()
    tags = {"churn/trigger": SENSOR_NAME, WATCHED[asset_key]: partition or "", "churn/decision": decision,
            "churn/source_asset": asset}
    drift_share = _meta_value(metadata, "drift_share")
    if drift_share is not None:
        tags["churn/drift_share"] = f"{float(drift_share):.4f}"
    window = _meta_value(metadata, "trainable_through")
    if window:
        tags[DATA_WINDOW_TAG] = str(window)
    return dg.RunRequest(job_name=job, run_key=f"{asset}:{partition}:{storage_id}", tags=tags)


def _runs_on_window(instance: dg.DagsterInstance, job: str, window: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(job_name=job, tags={DATA_WINDOW_TAG: window}), limit=5))


def _refused(instance: dg.DagsterInstance, run: dg.RunRecord) -> bool:
    """A training run whose challenger did not reach production: the run failed (a blocking
    automated test) or ml/production_model recorded 'refused'."""
    if run.dagster_run.status == dg.DagsterRunStatus.FAILURE:
        return True
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=PRODUCTION_MODEL_KEY), limit=20).records
    for record in records:
        if record.run_id == run.dagster_run.run_id and record.asset_materialization:
            return _meta_value(record.asset_materialization.metadata, "decision") == "refused"
    return False


def job_to_request(instance: dg.DagsterInstance, asset_key: dg.AssetKey, metadata: dict,
                   taken: set[tuple[str, str]]) -> tuple[str | None, str]:
    """(job or None, why) for one event's decision; `taken` = (job, window) already requested
    this tick."""
    decision = _meta_value(metadata, "decision")
    if decision not in JOB_FOR_DECISION:
        return None, "no action asked"
    window = str(_meta_value(metadata, "trainable_through") or "")
    judged = str(_meta_value(metadata, "model_trained_through") or "")  # the version the event judged
    learned = str(_meta_value(metadata, "production_trained_through") or judged)  # what production learned
    if not window:
        return None, "no final labelled month to train on yet"
    refused_retrain = any(_refused(instance, r) for r in _runs_on_window(instance, TRAIN_JOB, window))
    if learned and window <= learned:  # nothing new: a plain retrain would rebuild the same model
        # realised quality still bad for a model that had learned every final month: search again
        still_bad = asset_key == MODEL_PERFORMANCE and judged and judged >= window
        if not (refused_retrain or still_bad):
            return None, f"production already learned every final month (through {learned}): waiting for new labels"
        job = RETUNE_JOB
    else:  # a retrain the gate refused on this window escalates to the search
        job = RETUNE_JOB if refused_retrain else JOB_FOR_DECISION[decision]
    if (job, window) in taken or _runs_on_window(instance, job, window):
        return None, f"{job} already requested for the data through {window}"
    return job, f"{decision}: data through {window}, model learned through {learned or 'unknown'}"


def evaluate_drift_events(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[dg.RunRequest], str, list[str]]:
    """(run requests, new cursor, one line per event read) for the materialisations after `cursor`."""
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
    requests, taken, log = [], set(), []
    for storage_id, key, record in sorted(events, key=lambda e: e[0]):
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        job, why = job_to_request(instance, key, metadata, taken)
        log.append(f"{key.to_user_string()} {record.partition_key}: {why}")
        request = run_request_for(key, record.partition_key, storage_id, metadata, job) if job else None
        if request is None:
            continue
        taken.add((job, request.tags.get(DATA_WINDOW_TAG, "")))
        requests.append(request)
    return requests, json.dumps(seen, sort_keys=True), log


def _evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    requests, cursor, log = evaluate_drift_events(context.instance, context.cursor)
    for line in log:
        context.log.info(line)
    skip = None if requests else f"{len(log)} new monitoring decision(s), none needing a run: " + "; ".join(log[-3:])
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
        description="monitoring/drift_report, serving_drift or model_performance decided 'retrain' -> train_job, "
                    "'retune' -> retune_job, once per data window and only when new final labels exist "
                    "(or a retrain on them was refused: retune); cursor = last storage id per asset.",
    )
