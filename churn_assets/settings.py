"""Where things live, from the environment (defaults: README, "Configuration").

Read at call time, never at import time, so tests and the long-lived code
server see the environment they were started with.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    data_dir: Path

    @property
    def landing(self) -> Path:
        return self.data_dir / "landing"

    @property
    def oracle(self) -> Path:
        return self.data_dir / "oracle" / "renewals.parquet"

    @property
    def reports(self) -> Path:
        return self.data_dir / "reports"

    @property
    def analytics(self) -> Path:
        return self.data_dir / "analytics"

    @property
    def serving_logs(self) -> Path:
        return self.data_dir / "serving_logs"

    @property
    def evidently(self) -> Path:
        """The Evidently workspace (project `churn`) that `make monitor` opens."""
        return self.data_dir / "evidently"

    @property
    def duckdb_path(self) -> Path:
        return Path(os.environ.get("CHURN_DUCKDB_PATH") or self.data_dir / "warehouse" / "churn.duckdb")

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").resolve().as_uri()


def paths_from_env() -> Paths:
    return Paths(Path(os.environ.get("CHURN_DATA_DIR", "data")).resolve())
