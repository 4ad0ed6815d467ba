"""The churn-assets code location: every domain's assets, checks, jobs, sensors."""
import dagster as dg

from churn_assets.features.assets import features_assets, features_job
from churn_assets.ingest.assets import ingest_job, raw_assets
from churn_assets.ingest.sensors import landing_sensor
from churn_assets.model.assets import model_assets, model_checks, model_jobs, model_resources
from churn_assets.monitoring.assets import monitoring_assets, performance_job
from churn_assets.monitoring.sensors import build_drift_retrain_sensor
from churn_assets.resources import Warehouse, smtp_from_env
from churn_assets.scoring.assets import scoring_assets, scoring_jobs, scoring_schedules
from churn_assets.settings import paths_from_env


def build_definitions() -> dg.Definitions:
    """Resources read the environment here, so tests build definitions per data dir."""
    paths = paths_from_env()
    return dg.Definitions(
        assets=[*raw_assets, *features_assets, *model_assets, *scoring_assets, *monitoring_assets],
        asset_checks=model_checks,
        jobs=[ingest_job, features_job, *model_jobs, *scoring_jobs, performance_job],
        sensors=[landing_sensor, build_drift_retrain_sensor(model_jobs)],
        schedules=scoring_schedules,
        resources={
            "warehouse": Warehouse(database=str(paths.duckdb_path)),
            "smtp": smtp_from_env(),
            **model_resources(paths),
        },
    )


defs = build_definitions()
