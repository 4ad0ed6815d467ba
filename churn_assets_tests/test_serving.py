"""Online scoring: `python -m churn_assets.serve` (what `make serve` runs) is MLflow's model
server on models:/churn_model@production of a real sqlite registry; real HTTP requests on
127.0.0.1, the server stopped by its process group id."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.model.mlflow_logging import log_training
from churn_assets.model.names import MODEL_NAME, PRODUCTION
from churn_assets.model.data import load_training_frame
from churn_assets_tests.toy_world import write_toy_world
from churn_assets.model.training import train_churn_model
from churn_assets.core.buckets import ACTIONS, assign_buckets
from churn_assets_tests.test_model_support import fresh_mlflow_store

pytestmark = pytest.mark.slow  # starts the MLflow model server: see `make test-fast`

MONTHS = [dt.date(2017, m, 1) for m in range(1, 5)]
STARTUP_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _split(frame: pd.DataFrame) -> dict:
    """The body curl would send: {"dataframe_split": {...}} with JSON nulls for missing values."""
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (our PID: the serve wrapper exec'd mlflow, which
    spawned uvicorn in the same group), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def toy_production(root: Path) -> tuple[str, str, pd.DataFrame, object]:
    """(tracking URI, version, training frame, model): a real MLflow store under `root` whose
    production alias is a small model trained on a toy world (the months in MONTHS)."""
    uri, artifacts = fresh_mlflow_store(root / "mlflow")
    with duckdb.connect(str(root / "churn.duckdb")) as con:
        write_toy_world(con, MONTHS, 1500, seed=5)
        frame = load_training_frame(con, MONTHS)
    result = train_churn_model(frame, {"n_estimators": 60}, MONTHS[:3], MONTHS[3])
    logged = log_training(result, uri, artifacts)
    MlflowClient(uri).set_registered_model_alias(MODEL_NAME, PRODUCTION, logged.version)
    return uri, str(logged.version), frame, result.model


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    uri, _, frame, model = toy_production(root)

    port = _free_port()
    env = {**os.environ, "CHURN_DATA_DIR": str(root), "MLFLOW_TRACKING_URI": uri,
           "HOST": "127.0.0.1", "PORT": str(port)}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "churn_assets.serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"server exited: {Path(log.name).read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no /ping in {STARTUP_TIMEOUT_S} s: {Path(log.name).read_text()[-3000:]}"
            time.sleep(0.3)
        rows = frame[frame["target_month"] == MONTHS[3]].head(40).reset_index(drop=True)
        yield {"base": base, "rows": rows, "model": model, "pid": proc.pid}
    finally:
        _stop(proc)
        log.close()


def test_valid_batch_gets_probability_bucket_action_and_reasons(served):
    rows = served["rows"]
    # a caller's own columns ride along; the signature keeps only the features
    status, body = _post(f"{served['base']}/invocations", _split(rows[["msno", *FEATURE_COLUMNS]]))
    assert status == 200, body
    out = pd.DataFrame(body["predictions"])
    assert len(out) == len(rows)
    assert list(out.columns) == ["churn_probability", "bucket", "action", "reason_1", "reason_2", "reason_3"]
    p = out["churn_probability"].to_numpy(float)
    assert ((p > 0) & (p < 1)).all()
    # the same numbers the in-process model gives, after a JSON round trip
    np.testing.assert_allclose(p, served["model"].predict_proba(rows), rtol=1e-6)
    assert set(out["bucket"]) <= {"A", "B", "C"} and (out["bucket"] == assign_buckets(p)).all()
    assert (out["action"] == out["bucket"].map(ACTIONS)).all()
    # reasons in words (None only where a row has fewer positive SHAP contributions), as in process
    assert out["reason_1"].map(lambda r: isinstance(r, str) and len(r) > 3).mean() > 0.9
    local = served["model"].predict(None, rows)
    reasons = ["reason_1", "reason_2", "reason_3"]
    assert out[reasons].fillna("-").equals(local[reasons].fillna("-").reset_index(drop=True))


def test_missing_column_is_a_400_naming_it(served):
    rows = served["rows"].head(3)
    batch = rows[FEATURE_COLUMNS].drop(columns=["days_to_expiry"])
    status, body = _post(f"{served['base']}/invocations", _split(batch))
    assert 400 <= status < 500
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "missing inputs" in body["message"] and "days_to_expiry" in body["message"]


def test_server_is_stoppable_by_pid_and_serves_one_alias(served):
    # the group leader is the process we started (exec kept the PID), still alive while serving
    assert os.getpgid(served["pid"]) == served["pid"]
    with urllib.request.urlopen(f"{served['base']}/version", timeout=5) as r:
        assert r.status == 200
