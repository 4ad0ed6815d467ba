"""The one place that touches dagster-mlflow (beta, legacy-style resource and hook).

`mlflow_resource` is dagster_mlflow's `mlflow_tracking` resource, preceded by creating
experiment `churn` with an explicit artifact location (its own set_experiment would create
it with a default location under the working directory). One Dagster run = one MLflow run,
found again by the dagster_run_id tag in every step.

`end_mlflow_on_run_finished` ends that MLflow run when the job's last node in topological
order succeeds (or marks it FAILED when a step fails). Attach it to the asset job; a plain
`dg.materialize()` cannot take hooks, so tests execute the job instead.
"""
from __future__ import annotations

import warnings

import dagster as dg

with warnings.catch_warnings():  # dagster-mlflow is marked beta; say it once here, not on every import
    warnings.simplefilter("ignore")
    from dagster_mlflow import end_mlflow_on_run_finished
    from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from churn_assets.model.names import EXPERIMENT

__all__ = ["end_mlflow_on_run_finished", "mlflow_resource"]


@dg.resource(config_schema={**CONFIG_SCHEMA, "artifact_location": dg.Field(
    dg.Noneable(dg.StringSource), default_value=None, is_required=False,
    description="Artifact root of the experiment, used when the experiment is created.",
)})
def _churn_mlflow(context: dg.InitResourceContext):
    config = context.resource_config
    if config.get("mlflow_tracking_uri"):
        from churn_assets.model.mlflow_logging import ensure_experiment  # matplotlib, LightGBM: only when run

        ensure_experiment(config["mlflow_tracking_uri"], config.get("artifact_location"), config["experiment_name"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlf = MlFlow(context)
    yield mlf
    mlf.cleanup_on_error()


def mlflow_resource(tracking_uri: str, artifact_location: str | None = None) -> dg.ResourceDefinition:
    """dagster-mlflow's tracking resource for experiment `churn` at `tracking_uri`."""
    return _churn_mlflow.configured({
        "experiment_name": EXPERIMENT,
        "mlflow_tracking_uri": tracking_uri,
        "artifact_location": artifact_location,
    })
