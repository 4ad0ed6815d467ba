"""Resources for everything external: files, the DuckDB warehouse, the MLflow registry, SMTP.

Assets never read the environment or build clients themselves; they ask a
resource. `resources_for(environment)` builds the set once per environment
(local: files under CHURN_DATA_DIR; production: every location from the
environment, as hooli-data-eng-pipelines does), and tests pass temporary or
stub resources instead of monkeypatching.

Secrets come only from the environment through `dg.EnvVar`, so the UI and the
run config show the variable's name, never its value.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
from pydantic import Field

from churn_assets.settings import Paths, paths_from_env

if TYPE_CHECKING:  # MLflow is imported only when a registry method runs (it costs seconds)
    import pandas as pd
    from mlflow import MlflowClient

    from churn_assets.model.pyfunc import ChurnModel
    from churn_assets.model.mlflow_logging import LoggedTraining
    from churn_assets.model.promotion import GateDecision
    from churn_assets.model.versions import TrainingEvidence


class Storage(dg.ConfigurableResource):
    """The files beside the warehouse: landing drops, reports, the analysts' published Parquet, the oracle."""

    data_dir: str = Field(description="Root of the data folders (CHURN_DATA_DIR).")

    @property
    def paths(self) -> Paths:
        return Paths(Path(self.data_dir).resolve())

    @property
    def landing(self) -> Path:
        return self.paths.landing

    @property
    def reports(self) -> Path:
        return self.paths.reports


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file's write lock for too long."""


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. Opened only inside `get_connection()` (never
    at import time: the code server lives long and would hold the lock)."""

    database: str = Field(description="Path of the DuckDB file (CHURN_DUCKDB_PATH).")
    lock_timeout_seconds: float = Field(
        default=120.0, description="How long to wait for another process's lock before failing."
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        con = _connect_waiting(self.database, self.lock_timeout_seconds)
        try:
            yield con
        finally:
            con.close()


def _connect_waiting(database: str, timeout: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"DuckDB file {database} is locked by another process for more than "
                    f"{timeout:.0f} s ({exc}). Close the DuckDB CLI or notebook that has it open "
                    "(query data/analytics.duckdb or the Parquet files instead), or raise "
                    "lock_timeout_seconds on the warehouse resource, then re-run."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class Smtp(dg.ConfigurableResource):
    """Where the weekly report is e-mailed. Unset host: report written to disk only."""

    host: str | None = None
    port: int = 587
    user: str | None = None
    password: str | None = None
    sender: str = "churn-assets@localhost"
    recipients: str | None = Field(default=None, description="Comma-separated addresses (CHURN_SMTP_TO).")
    security: str = Field(default="starttls", description="starttls, ssl or none (CHURN_SMTP_SECURITY).")
    timeout_seconds: float = 20.0

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.recipients)


def smtp_from_env() -> Smtp:
    """Build the SMTP resource from CHURN_SMTP_* names, passing secrets as EnvVar."""

    def env(name: str):
        return dg.EnvVar(name) if os.environ.get(name) else None

    return Smtp(
        host=env("CHURN_SMTP_HOST"),
        port=dg.EnvVar.int("CHURN_SMTP_PORT") if os.environ.get("CHURN_SMTP_PORT") else 587,
        user=env("CHURN_SMTP_USER"),
        password=env("CHURN_SMTP_PASSWORD"),
        sender=env("CHURN_SMTP_FROM") or "churn-assets@localhost",
        recipients=env("CHURN_SMTP_TO"),
        security=env("CHURN_SMTP_SECURITY") or "starttls",
    )


class ModelRegistry(dg.ConfigurableResource):
    """The MLflow tracking store and model registry: load production, read a version's training
    evidence, log a training run, run the gates, promote. Thin: the MLflow work lives in
    churn_assets.model.versions / mlflow_logging / promotion, which take a client; this binds
    the client to a store. MLflow is imported only when a method runs (it costs seconds)."""

    tracking_uri: str = Field(description="MLflow tracking and registry URI (MLFLOW_TRACKING_URI).")
    artifact_location: str | None = Field(default=None, description="Artifact root used when experiment churn is created.")

    def client(self) -> MlflowClient:
        from churn_assets.model.versions import mlflow_client

        return mlflow_client(self.tracking_uri)

    def load_production(self) -> tuple[ChurnModel, str]:
        """The model behind models:/churn_model@production and its version."""
        from churn_assets.model.versions import load_production

        return load_production(self.tracking_uri)

    def production_version(self) -> str | None:
        from churn_assets.model.names import PRODUCTION

        return self.alias_version(PRODUCTION)

    def alias_version(self, alias: str) -> str | None:
        from churn_assets.model.versions import alias_version

        return alias_version(self.client(), alias)

    def version_tags(self, version: str) -> dict[str, str]:
        from churn_assets.model.versions import version_tags

        return version_tags(self.client(), str(version))

    def trained_through(self, version: str | None) -> date | None:
        """The newest label month `version` learned (None: no such version or no tag)."""
        from churn_assets.dates import as_date
        from churn_assets.model.versions import trained_through

        return None if version is None else as_date(trained_through(self.version_tags(version)))

    def production_params(self) -> dict | None:
        from churn_assets.model.versions import production_params

        return production_params(self.client())

    def training_evidence(self, version: str) -> TrainingEvidence:
        from churn_assets.model.versions import training_evidence

        return training_evidence(self.client(), str(version))

    def validation_scores(self, version: str) -> pd.DataFrame:
        from churn_assets.model.versions import validation_scores

        return validation_scores(self.client(), str(version))

    def log_training(self, result, tags: dict[str, str]) -> LoggedTraining:
        """Log into the active MLflow run (the dagster-mlflow resource's) and register a version."""
        from churn_assets.model.mlflow_logging import log_training

        return log_training(result, tags=tags, tracking_uri=self.tracking_uri,
                            artifact_location=self.artifact_location)

    def automated_tests(self, version: str, **gate_settings) -> GateDecision:
        """The automated gate on `version`'s logged evidence (moves alias staging on a pass)."""
        from churn_assets.model.promotion import automated_tests
        from churn_assets.model.versions import training_evidence

        client = self.client()
        return automated_tests(client, str(version), training_evidence(client, str(version)), **gate_settings)

    def acceptance(self, version: str, frame, acceptance_month: date, **settings) -> GateDecision:
        """Acceptance against production on `acceptance_month` (moves alias production on a pass)."""
        from churn_assets.model.promotion import acceptance

        return acceptance(self.client(), str(version), frame, acceptance_month, **settings)

    def experiment_id(self) -> str:
        from churn_assets.model.mlflow_logging import ensure_experiment

        return ensure_experiment(self.tracking_uri, self.artifact_location)

    # ---- monitoring helpers (helper O adds methods below this line)

    def production_trained_through(self) -> date | None:
        """The newest label month the version behind @production learned (None: no production yet)."""
        return self.trained_through(self.production_version())

    def validation_metrics(self, version: str) -> dict[str, float]:
        """The valid_* metrics of the run that produced `version`, without the prefix (auc,
        log_loss, ...): no artifact is downloaded, unlike training_evidence."""
        from churn_assets.model.names import MODEL_NAME

        client = self.client()
        run_id = client.get_model_version(MODEL_NAME, str(version)).run_id
        metrics = client.get_run(run_id).data.metrics
        return {name.removeprefix("valid_"): value for name, value in metrics.items() if name.startswith("valid_")}

    def run_url(self, run_id: str) -> str:
        """The MLflow UI page of a run (CHURN_MLFLOW_UI_URL, default the local `mlflow ui`)."""
        ui = os.environ.get("CHURN_MLFLOW_UI_URL", "http://localhost:5000").rstrip("/")
        return f"{ui}/#/experiments/{self.experiment_id()}/runs/{run_id}"



def local_resources(paths: Paths | None = None) -> dict:
    """Development and the demo: everything under CHURN_DATA_DIR (DuckDB file, sqlite MLflow store)."""
    from churn_assets.defs.model.tracking import mlflow_resource

    paths = paths or paths_from_env()
    return {
        "storage": Storage(data_dir=str(paths.data_dir)),
        "warehouse": Warehouse(database=str(paths.duckdb_path)),
        "registry": ModelRegistry(tracking_uri=paths.mlflow_tracking_uri,
                                  artifact_location=paths.mlflow_artifact_location),
        "mlflow": mlflow_resource(paths.mlflow_tracking_uri, paths.mlflow_artifact_location),
        "smtp": smtp_from_env(),
    }


def production_resources() -> dict:
    """Production: every location is named by the environment (deploy/env.example) and read when
    a run starts, so a missing variable fails the run with its name instead of writing to ./data."""
    from churn_assets.defs.model.tracking import mlflow_resource

    for name in ("CHURN_DATA_DIR", "CHURN_DUCKDB_PATH", "MLFLOW_TRACKING_URI"):
        if not os.environ.get(name):
            raise RuntimeError(f"CHURN_ENV=production needs {name} set (see deploy/env.example)")
    artifacts = os.environ.get("CHURN_MLFLOW_ARTIFACT_LOCATION")
    return {
        "storage": Storage(data_dir=dg.EnvVar("CHURN_DATA_DIR")),
        "warehouse": Warehouse(database=dg.EnvVar("CHURN_DUCKDB_PATH")),
        "registry": ModelRegistry(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"), artifact_location=artifacts),
        "mlflow": mlflow_resource(os.environ["MLFLOW_TRACKING_URI"], artifacts),
        "smtp": smtp_from_env(),
    }


RESOURCES_BY_ENVIRONMENT = {"local": local_resources, "production": production_resources}


def resources_for(environment: str | None = None) -> dict:
    """The resource set of CHURN_ENV (default local)."""
    environment = environment or os.environ.get("CHURN_ENV", "local")
    if environment not in RESOURCES_BY_ENVIRONMENT:
        raise ValueError(f"CHURN_ENV must be one of {sorted(RESOURCES_BY_ENVIRONMENT)}, got {environment!r}")
    return RESOURCES_BY_ENVIRONMENT[environment]()
