"""`make serve`: MLflow's own model server on the production alias.

The registered pyfunc already returns churn_probability, bucket, action and reason_1..3
(churn_assets.model.pyfunc.ChurnModel.predict), and MLflow's server enforces the logged
input signature (a missing column is a 400 naming it), so this only resolves the tracking
URI the pipeline uses and hands over to `mlflow models serve` in this environment.

    HOST=127.0.0.1 PORT=5001 python -m churn_assets.serve
"""
from __future__ import annotations

import os
import sys

from churn_assets.model.names import MODEL_NAME, PRODUCTION
from churn_assets.settings import paths_from_env

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", "5001"  # 5000 is the MLflow UI's habit


def serve_command(host: str, port: str, workers: str = "1") -> list[str]:
    """argv of the MLflow model server for models:/churn_model@production, in this venv
    (--env-manager local: the model's pinned pip requirements are this environment's)."""
    return [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{MODEL_NAME}@{PRODUCTION}",
        "--env-manager", "local", "-h", host, "-p", port, "-w", workers,
    ]


def main() -> None:
    # the CLI resolves models:/ through MLFLOW_TRACKING_URI: pin it to the pipeline's store
    os.environ["MLFLOW_TRACKING_URI"] = paths_from_env().mlflow_tracking_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow starts `uvicorn` by name: find this venv's even when the venv is not activated
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    argv = serve_command(
        os.environ.get("HOST", DEFAULT_HOST), os.environ.get("PORT", DEFAULT_PORT), os.environ.get("WORKERS", "1")
    )
    print(f"serving models:/{MODEL_NAME}@{PRODUCTION} from {os.environ['MLFLOW_TRACKING_URI']}", flush=True)
    os.execv(argv[0], argv)  # the server takes this PID: stopping it stops the server


if __name__ == "__main__":
    main()
