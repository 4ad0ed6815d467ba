"""Reading the model registry: the one MLflow client constructor, a version's model, tags,
training recipe and training evidence, and the version behind an alias.

Every function takes an MlflowClient (build it with `mlflow_client`), so nothing here
depends on the process-wide tracking URI.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from churn_assets.core.metrics import METRIC_NAMES
from churn_assets.model.names import (
    FEATURE_IMPORTANCE,
    MODEL_NAME,
    PARAMS,
    PRODUCTION,
    REFERENCE_FEATURES,
    TAG_TRAINED_THROUGH,
    VALIDATION_SCORES,
)
from churn_assets.model.pyfunc import ChurnModel
from churn_assets.model.training import RUNTIME_PARAMS
from churn_assets.settings import paths_from_env

# artifact downloads here are a few small files: their tqdm bars only clutter run logs
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
TAG_VALUE_MAX = 4900  # MLflow refuses tag values over 5000 characters


@dataclass
class TrainingEvidence:
    """What the gate needs from a training run when the TrainingResult is gone (a later step)."""

    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    validation_predictions: pd.DataFrame
    reference_sample: pd.DataFrame
    model: ChurnModel | None = None
    feature_importance: pd.DataFrame | None = None  # feature, gain, split (the drift weights)
    tags: dict[str, str] = field(default_factory=dict)  # the version's tags (valid_month, trained_through, ...)


def mlflow_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client of the tracking store and model registry at `tracking_uri` (default: the
    pipeline's, MLFLOW_TRACKING_URI or the sqlite file under CHURN_DATA_DIR)."""
    uri = tracking_uri or paths_from_env().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def set_version_tags(client: MlflowClient, version: str, tags: dict[str, object]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, str(version), key, str(value)[:TAG_VALUE_MAX])


def version_tags(client: MlflowClient, version: str) -> dict[str, str]:
    """The tags of `churn_model` version `version`, read fresh from the registry."""
    return dict(client.get_model_version(MODEL_NAME, str(version)).tags)


def load_pyfunc(client: MlflowClient, version: str) -> mlflow.pyfunc.PyFuncModel:
    """A registered version loaded from its artifact location, so it does not depend on the
    process-wide tracking URI."""
    return mlflow.pyfunc.load_model(client.get_model_version_download_uri(MODEL_NAME, str(version)))


def load_version(client: MlflowClient, version: str) -> ChurnModel:
    return load_pyfunc(client, version).unwrap_python_model()


def alias_version(client: MlflowClient, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def load_production(tracking_uri: str | None = None) -> tuple[ChurnModel, str]:
    """(model, version) behind models:/churn_model@production. The alias is resolved once and
    that version loaded, so the pair is consistent even if the alias moves meanwhile."""
    client = mlflow_client(tracking_uri)
    version = alias_version(client, PRODUCTION)
    if version is None:
        raise LookupError(f"registered model {MODEL_NAME!r} has no {PRODUCTION!r} alias yet: train and promote a model first")
    return load_version(client, version), version


def production_params(client: MlflowClient) -> dict | None:
    """The production version's training recipe (params.json of its run), or None. Runtime
    settings that older runs persisted (num_threads) are dropped: the next run's config sets them."""
    version = alias_version(client, PRODUCTION)
    if version is None:
        return None
    run_id = client.get_model_version(MODEL_NAME, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        params = json.loads(Path(client.download_artifacts(run_id, PARAMS, tmp)).read_text())
    return {k: v for k, v in params.items() if k not in RUNTIME_PARAMS}


def trained_through(tags: dict[str, str]) -> str:
    """ISO date of the newest labelled month a version learned from its tags ('' unknown).
    Versions logged before the tag existed learned up to their validation month's predecessor;
    their valid_month is the safe upper bound."""
    return tags.get(TAG_TRAINED_THROUGH) or tags.get("valid_month", "")


def validation_scores(client: MlflowClient, version: str) -> pd.DataFrame:
    """msno, churn_probability, is_churn: the hold-out predictions logged with `version`."""
    run_id = client.get_model_version(MODEL_NAME, str(version)).run_id
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, VALIDATION_SCORES, tmp))


def training_evidence(client: MlflowClient, version: str) -> TrainingEvidence:
    """Metrics and reference artifacts of the run that produced `version`."""
    model_version = client.get_model_version(MODEL_NAME, str(version))
    run = client.get_run(model_version.run_id)
    m = run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        ref = pd.read_parquet(client.download_artifacts(run.info.run_id, REFERENCE_FEATURES, tmp))
        val = pd.read_parquet(client.download_artifacts(run.info.run_id, VALIDATION_SCORES, tmp))
        try:
            importance = pd.read_csv(client.download_artifacts(run.info.run_id, FEATURE_IMPORTANCE, tmp))
        except (MlflowException, OSError):  # a run logged before importance was an artifact
            importance = None
    return TrainingEvidence(
        metrics={k: m[f"valid_{k}"] for k in METRIC_NAMES if f"valid_{k}" in m},
        baseline_metrics={k: m[f"baseline_{k}"] for k in METRIC_NAMES if f"baseline_{k}" in m},
        validation_predictions=val,
        reference_sample=ref,
        feature_importance=importance,
        tags=dict(model_version.tags),
    )
