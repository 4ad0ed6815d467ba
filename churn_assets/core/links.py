"""Where each UI shows a thing, so the three point at each other: a Dagster run (`make ui`),
an Evidently snapshot and the monitoring dashboard (`make monitor`). The MLflow run's page is
ModelRegistry.run_url. The bases come from the environment at call time (defaults: the local
UIs the Makefile starts), so links written by a deployment point at its own hosts."""
from __future__ import annotations

import os

DAGSTER_UI_ENV, DAGSTER_UI_DEFAULT = "CHURN_DAGSTER_UI_URL", "http://127.0.0.1:3000"
EVIDENTLY_UI_ENV, EVIDENTLY_UI_DEFAULT = "CHURN_EVIDENTLY_UI_URL", "http://127.0.0.1:8000"


def _base(name: str, default: str) -> str:
    return (os.environ.get(name) or default).rstrip("/")


def dagster_run_url(run_id: str) -> str:
    return f"{_base(DAGSTER_UI_ENV, DAGSTER_UI_DEFAULT)}/runs/{run_id}"


def evidently_dashboard_url(project_id: object) -> str:
    return f"{_base(EVIDENTLY_UI_ENV, EVIDENTLY_UI_DEFAULT)}/projects/{project_id}"


def evidently_snapshot_url(project_id: object, snapshot_id: object) -> str:
    """The snapshot's page in the Evidently UI (its route /projects/<project>/reports/<snapshot>)."""
    return f"{evidently_dashboard_url(project_id)}/reports/{snapshot_id}"
