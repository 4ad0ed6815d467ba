"""monitoring/serving_drift: the week's logged online requests (`make serve`'s serving log) against the
training reference of the model that answered them, with the batch drift's steps, thresholds and
policy. Its `decision` metadata feeds drift_retrain_sensor like drift_report's, so online traffic can
ask for a retrain too. The steps live in churn_assets.monitoring.serving_drift.
(No `from __future__ import annotations`: Dagster reads the Config annotations at definition time.)
"""
from functools import partial

import dagster as dg
from pydantic import Field

from churn_assets.analytics.publish import publish
from churn_assets.dates import week_of
from churn_assets.defs import keys
from churn_assets.defs.metadata import frame_metadata
from churn_assets.defs.monitoring.assets import DriftConfig
from churn_assets.defs.monitoring.metadata import iso
from churn_assets.defs.partitions import weekly_partitions
from churn_assets.defs.resources import ModelRegistry, Storage, Warehouse
from churn_assets.monitoring.policy import validate_thresholds
from churn_assets.monitoring.queries import trainable_through


class ServingDriftConfig(DriftConfig):
    """drift_report's settings, inherited so both use the same policy and the same cached thresholds
    (a version's calibration is stored per methods, factor and sample size), plus min_requests."""

    min_requests: int = Field(default=500, description="Training-like logged rows a week needs for a verdict; "
                              "fewer: recorded, decision none.")


def serving_metadata(verdict, trainable, trained_through, production_trained_through, config) -> dict:
    """What drift_retrain_sensor reads (decision, drift_share, the three months), and the row for the UI."""
    v = verdict.value
    extra = {
        "decision": dg.MetadataValue.text(v("decision")), "level": dg.MetadataValue.text(v("level")),
        "status": dg.MetadataValue.text(v("status")), "model_version": dg.MetadataValue.text(v("model_version")),
        "n_requests": dg.MetadataValue.int(int(v("n_requests"))),
        "compared_rows": dg.MetadataValue.int(int(v("compared_rows"))),
        "drifted_columns": dg.MetadataValue.text(v("drifted_columns")),
        "trainable_through": dg.MetadataValue.text(iso(trainable)),
        "model_trained_through": dg.MetadataValue.text(iso(trained_through)),
        "production_trained_through": dg.MetadataValue.text(iso(production_trained_through)),
        "report_path": dg.MetadataValue.path(v("report_path")),
        "retrain_at": dg.MetadataValue.float(config.retrain_at), "retune_at": dg.MetadataValue.float(config.retune_at),
    }
    if verdict.result is not None:  # measured: a share the sensor can tag the run with
        extra["drift_share"] = dg.MetadataValue.float(float(verdict.result.drift_share))
        extra["n_drifted"] = dg.MetadataValue.int(verdict.result.n_drifted)
    return frame_metadata(verdict.row, extra=extra)


@dg.asset(
    key=keys.SERVING_DRIFT,
    partitions_def=weekly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "evidently", "parquet"},
    pool="duckdb_warehouse",
    deps=[keys.PRODUCTION_MODEL],
    description=(
        "Evidently data drift of the week's logged online requests (serving_logs/, `make serve`) against the "
        "training reference of the model that answered them, with drift_report's thresholds, gain weights and "
        "policy. Writes monitoring.serving_drift; a week without enough requests is recorded with decision none."
    ),
)
def serving_drift(context: dg.AssetExecutionContext, config: ServingDriftConfig, warehouse: Warehouse,
                  registry: ModelRegistry, storage: Storage) -> dg.MaterializeResult:
    from churn_assets.monitoring import serving_drift as sd  # Evidently: imported only when run
    from churn_assets.monitoring.drift_week import calibration_for

    validate_thresholds(config.retrain_at, config.retune_at, config.hysteresis)
    week = week_of(context.partition_key)
    requests = sd.read_week(storage.paths.serving_logs, week)
    with warehouse.get_connection() as con:
        previous, trainable = sd.previous_row(con, week), trainable_through(con)
    if len(requests.current) < config.min_requests:
        verdict = sd.quiet_week(requests, requests.version or registry.production_version())
    else:
        evidence = registry.training_evidence(requests.version)
        calibrate = partial(calibration_for, warehouse.get_connection, requests.version, evidence.reference_sample,
                            factor=config.calibration_factor, sample_size=config.sample_size, seed=config.seed)
        verdict = sd.compare_week(requests, evidence, previous, calibrate, config, sd.html_path(storage.reports, week))
    with warehouse.get_connection() as con:
        sd.write_week(con, verdict)
        publish(con, {sd.SERVING_DRIFT_TABLE: week}, storage.paths)
    context.log.info(sd.summary(verdict))
    version = verdict.value("model_version") or None
    return dg.MaterializeResult(metadata=serving_metadata(
        verdict, trainable, registry.trained_through(version), registry.production_trained_through(), config))


serving_drift_job = dg.define_asset_job(
    "serving_drift_job",
    selection=dg.AssetSelection.assets(serving_drift),
    partitions_def=weekly_partitions,
    description="Drift of a week's logged online requests against the answering model's training reference; "
    "run once the week is over (its Monday-to-Monday window complete).",
)
