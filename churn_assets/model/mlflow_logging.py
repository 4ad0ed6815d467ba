"""Writing a training run to MLflow: the experiment, params, metrics, plots, the drift
reference and the pyfunc model, registered as a new version of churn_model with the tags
that say what it learned."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no backend to choose in headless workers
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.model.names import (
    CALIBRATION_CURVE,
    EXPERIMENT,
    FEATURE_IMPORTANCE,
    MODEL_NAME,
    PARAMS,
    REFERENCE_FEATURES,
    TAG_FINGERPRINT,
    TAG_TRAINED_THROUGH,
    VALIDATION_SCORES,
    model_uri,
)
from churn_assets.model.pyfunc import PREDICT_PARAMS
from churn_assets.model.training import TrainingResult
from churn_assets.model.versions import mlflow_client, set_version_tags
from churn_assets.settings import paths_from_env


@dataclass(frozen=True)
class LoggedTraining:
    run_id: str
    version: str
    model_uri: str


def pip_requirements() -> list[str]:
    """Pinned from the running environment (MLflow's own inference costs seconds per call).
    The model class lives in this package, so serving needs churn-assets installed too."""
    pins = []
    for dist in ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "cloudpickle", "churn-assets"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # running from a source checkout
            pins.append(dist)
    return pins


def ensure_experiment(tracking_uri: str, artifact_location: str | None = None, name: str = EXPERIMENT) -> str:
    """Id of experiment `name`, created with an explicit artifact location when missing
    (sqlite stores would otherwise put artifacts under the working directory)."""
    if tracking_uri.startswith("sqlite:///"):  # sqlite will not create the folder itself
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_location or paths_from_env().mlflow_artifact_location
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent run
        return client.get_experiment_by_name(name).experiment_id


def importance_figure(importance: pd.DataFrame, top: int = 20) -> Figure:
    head = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * len(head) + 1.2), layout="tight")
    ax = fig.subplots()
    ax.barh(head["feature"], head["gain"])
    ax.set_xlabel("total gain")
    ax.set_title("LightGBM feature importance")
    return fig


def calibration_figure(curve: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(5, 5), layout="tight")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    ax.plot(curve["mean_predicted"], curve["observed_rate"], marker="o", label="model")
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Calibration on the validation month")
    ax.legend()
    return fig


def _log_run_contents(result: TrainingResult, tags: dict[str, str]) -> None:
    """Params, metrics, tags, plots and artifacts of `result` into the active run."""
    mlflow.log_params({
        **result.params,
        "train_months": ",".join(m.isoformat() for m in result.train_months),
        "valid_month": result.valid_month.isoformat(),
        "trained_through": result.trained_through.isoformat(),
        "best_iteration": result.best_iteration,
        "holdout_iteration": result.holdout_iteration,
        "runtime.num_threads": result.num_threads,  # not part of the recipe (params.json)
    })
    mlflow.log_metrics({
        **{f"valid_{k}": v for k, v in result.metrics.items()},
        **{f"baseline_{k}": v for k, v in result.baseline_metrics.items()},
    })
    mlflow.set_tags(tags)
    mlflow.log_dict(result.params, PARAMS)
    mlflow.log_figure(importance_figure(result.feature_importance), "plots/feature_importance.png")
    mlflow.log_figure(calibration_figure(result.calibration_curve), "plots/calibration.png")
    with tempfile.TemporaryDirectory() as tmp:
        for rel, frame in (
            (REFERENCE_FEATURES, result.reference_sample),
            (VALIDATION_SCORES, result.validation_predictions),
            (FEATURE_IMPORTANCE, result.feature_importance),
            (CALIBRATION_CURVE, result.calibration_curve),
        ):
            path = Path(tmp) / Path(rel).name
            frame.to_parquet(path, index=False) if rel.endswith(".parquet") else frame.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path=str(Path(rel).parent))


def log_training(
    result: TrainingResult,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> LoggedTraining:
    """Log params, metrics, plots, drift reference and the pyfunc model into the active MLflow
    run (the dagster-mlflow one) or a new run of experiment `churn`; register a new version of
    `churn_model`. Returns run id, version number (string) and the version's model URI."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(mlflow.get_tracking_uri(), artifact_location)
    own_run = mlflow.active_run() is None
    run = mlflow.start_run(experiment_id=experiment_id) if own_run else mlflow.active_run()
    try:
        _log_run_contents(result, tags or {})
        sample = result.reference_sample[FEATURE_COLUMNS].head(200)  # the reference also has target_month
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=result.model,
            signature=infer_signature(sample, result.model.predict(None, sample), params=PREDICT_PARAMS),
            pip_requirements=pip_requirements(),
            registered_model_name=MODEL_NAME,
        )
        version = str(info.registered_model_version)
        set_version_tags(mlflow_client(mlflow.get_tracking_uri()), version, {
            "valid_month": result.valid_month.isoformat(),
            "train_months": ",".join(m.isoformat() for m in result.train_months),
            TAG_TRAINED_THROUGH: result.trained_through.isoformat(),
            TAG_FINGERPRINT: result.fingerprint,
            **(tags or {}),
        })
        return LoggedTraining(run.info.run_id, version, model_uri(version))
    finally:
        if own_run:
            mlflow.end_run()
