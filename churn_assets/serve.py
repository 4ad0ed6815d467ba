"""`make serve`: MLflow's own scoring app on the production alias, logging every answered request.

The registered pyfunc already returns churn_probability, bucket, action and reason_1..3
(churn_assets.model.pyfunc.ChurnModel.predict), and MLflow's scoring app enforces the logged
input signature (a missing column is a 400 naming it). This resolves the alias once (the
tracking URI the pipeline uses), then runs the app `mlflow models serve` runs
(mlflow.pyfunc.scoring_server.init) under uvicorn in this environment, with the model
wrapped so each answered request is appended to the serving log
(churn_assets.monitoring.serving_log, under $CHURN_DATA_DIR/serving_logs) before its answer leaves.

    HOST=127.0.0.1 PORT=5001 python -m churn_assets.serve
"""
from __future__ import annotations

import os
import sys

from churn_assets.model.names import MODEL_NAME, PRODUCTION
from churn_assets.monitoring.serving_log import ServingLog, predict_and_log, retention_days_from_env
from churn_assets.settings import paths_from_env

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", "5001"  # 5000 is the MLflow UI's habit
VERSION_ENV = "CHURN_SERVE_MODEL_VERSION"  # the version main() resolved: every worker loads the same one


def serve_command(host: str, port: str, workers: str = "1") -> list[str]:
    """argv of uvicorn serving `create_app` in this venv (the model's pinned pip requirements
    are this environment's, as with `mlflow models serve --env-manager local`)."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "churn_assets.serve:create_app",
        "--host", host, "--port", port, "--workers", workers,
    ]


class LoggedModel:
    """The loaded pyfunc as MLflow's scoring app uses it (metadata, predict(data, params)),
    appending each answered request to the serving log. The app parses the body first, so
    only the parsed frame arrives here: headers and top-level body fields never do."""

    def __init__(self, model, log: ServingLog, version: str):
        self._model, self._log, self.version = model, log, str(version)

    @property
    def metadata(self):
        return self._model.metadata

    def predict(self, data, params: dict | None = None):
        return predict_and_log(lambda frame: self._model.predict(frame, params=params), data, self._log, self.version)


def create_app():
    """uvicorn's app factory (one per worker process): the pinned version, its serving log."""
    from mlflow.pyfunc import scoring_server

    from churn_assets.model.versions import load_pyfunc, mlflow_client

    paths = paths_from_env()
    version = os.environ[VERSION_ENV]
    model = load_pyfunc(mlflow_client(paths.mlflow_tracking_uri), version)
    log = ServingLog(paths.serving_logs, retention_days_from_env())
    return scoring_server.init(LoggedModel(model, log, version))


def main() -> None:
    from churn_assets.model.versions import alias_version, mlflow_client

    # the workers find the store through MLFLOW_TRACKING_URI: pin it to the pipeline's
    os.environ["MLFLOW_TRACKING_URI"] = paths_from_env().mlflow_tracking_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    version = alias_version(mlflow_client(os.environ["MLFLOW_TRACKING_URI"]), PRODUCTION)
    if version is None:
        sys.exit(f"registered model {MODEL_NAME!r} has no {PRODUCTION!r} alias yet: train and promote a model first")
    os.environ[VERSION_ENV] = version
    argv = serve_command(
        os.environ.get("HOST", DEFAULT_HOST), os.environ.get("PORT", DEFAULT_PORT), os.environ.get("WORKERS", "1")
    )
    print(f"serving models:/{MODEL_NAME}@{PRODUCTION} (version {version}) from {os.environ['MLFLOW_TRACKING_URI']}, "
          f"logging requests to {paths_from_env().serving_logs}", flush=True)
    os.execv(argv[0], argv)  # the server takes this PID: stopping it stops the server


if __name__ == "__main__":
    main()
