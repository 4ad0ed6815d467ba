"""The churn-assets code location: every domain's assets, checks, jobs, sensors and schedules,
with the resources of the environment (CHURN_ENV: local by default, or production)."""
import dagster as dg

from churn_assets.defs.features.assets import features_assets, features_job
from churn_assets.defs.ingest.assets import ingest_job, raw_assets
from churn_assets.defs.ingest.sensors import landing_sensor
from churn_assets.defs.marketing.assets import effect_assets, marketing_assets
from churn_assets.defs.model.assets import model_assets
from churn_assets.defs.model.checks import model_checks
from churn_assets.defs.model.jobs import model_jobs
from churn_assets.defs.monitoring.assets import monitoring_assets
from churn_assets.defs.monitoring.jobs import performance_job
from churn_assets.defs.monitoring.sensors import build_drift_retrain_sensor
from churn_assets.defs.monitoring.serving_drift import serving_drift, serving_drift_job
from churn_assets.defs.resources import resources_for
from churn_assets.defs.scoring.assets import scoring_assets
from churn_assets.defs.scoring.jobs import scoring_jobs
from churn_assets.defs.monitoring.schedules import monitoring_schedules
from churn_assets.defs.scoring.schedules import scoring_schedules


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """Resources read the environment here (or are given), so tests build definitions per data dir."""
    return dg.Definitions(
        assets=[*raw_assets, *features_assets, *model_assets, *scoring_assets, *marketing_assets, *effect_assets,
                *monitoring_assets, serving_drift],
        asset_checks=model_checks,
        jobs=[ingest_job, features_job, *model_jobs, *scoring_jobs, performance_job, serving_drift_job],
        sensors=[landing_sensor, build_drift_retrain_sensor(model_jobs)],
        schedules=[*scoring_schedules, *monitoring_schedules],
        resources=resources if resources is not None else resources_for(),
    )


defs = build_definitions()
