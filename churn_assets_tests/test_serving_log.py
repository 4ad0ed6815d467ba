"""The serving log: `make serve` (python -m churn_assets.serve, a real server on 127.0.0.1) logs every
answered row and nothing else of a request; a killed writer leaves whole files or none; retention
deletes old day folders; the demo's replay goes through the server's own predict-and-log path."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS
from churn_assets.model.versions import load_production
from churn_assets.monitoring.serving_log import (
    LOG_COLUMNS, RESPONSE_COLUMNS, ServingLog, log_files, loggable_inputs, predict_and_log, read_log,
    remove_stale_temp_files, replay_requests, replay_scored_week, retention_days_from_env,
)
from churn_assets_tests.test_serving import STARTUP_TIMEOUT_S, _free_port, _post, _split, _stop, toy_production
from churn_assets_tests.toy_world import toy_month

MONTHS = [dt.date(2017, m, 1) for m in range(1, 5)]
SECRET = "sk-live-DO-NOT-LOG-4242"
MONDAY = pd.Timestamp("2017-04-03 10:00", tz="UTC")


def requests_of(n: int, seed: int = 0) -> pd.DataFrame:
    frame = toy_month(dt.date(2017, 3, 1), n, seed)
    return frame[["msno", *FEATURE_COLUMNS]].reset_index(drop=True)


def answers(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 8, n)
    return pd.DataFrame({"churn_probability": p, "bucket": np.where(p >= 0.3, "B", "C"), "action": "email",
                         "reason_1": "listens less", "reason_2": None, "reason_3": None})


def every_value(files: list[Path]) -> set[str]:
    """Every column name and cell of the files, as text."""
    seen = set()
    for f in files:
        table = pq.ParquetFile(f).read()
        seen |= set(table.schema.names) | {str(v) for column in table.to_pydict().values() for v in column}
        seen |= {str(v) for v in (table.schema.metadata or {}).values()}
    return seen


# ---------------------------------------------------------------- the log itself (fast)


def test_only_the_feature_spec_msno_and_answer_are_logged(tmp_path):
    sent = requests_of(8)
    sent["api_key"] = SECRET  # a caller's extra fields ride along in the frame
    sent["authorization"] = f"Bearer {SECRET}"
    with ServingLog(tmp_path, clock=lambda: MONDAY) as log:
        assert log.append(loggable_inputs(sent), answers(8), "7") == 8
    logged = read_log(tmp_path)
    assert list(logged.columns) == LOG_COLUMNS and len(logged) == 8
    assert not any(SECRET in value for value in every_value(log_files(tmp_path)))
    assert (logged["msno"] == sent["msno"]).all() and (logged["model_version"] == "7").all()
    pd.testing.assert_frame_equal(logged[FEATURE_COLUMNS].astype({c: object for c in CATEGORICAL_COLUMNS}),
                                  sent[FEATURE_COLUMNS].astype({c: object for c in CATEGORICAL_COLUMNS}),
                                  check_dtype=False)
    np.testing.assert_allclose(logged["churn_probability"], answers(8)["churn_probability"])
    assert (logged["logged_at"] == MONDAY).all() and (logged["row_in_request"] == range(8)).all()


def test_buffered_rows_are_flushed_per_hour_and_read_back_by_window(tmp_path):
    hours = iter([MONDAY, MONDAY + pd.Timedelta(minutes=30), MONDAY + pd.Timedelta(hours=2)])
    with ServingLog(tmp_path, flush_rows=100, clock=lambda: MONDAY) as log:
        for k, at in enumerate(hours):
            log.append(loggable_inputs(requests_of(10, k)), answers(10, k), "7", at=at)
        assert log_files(tmp_path) == []  # 30 rows < flush_rows: still buffered
    files = log_files(tmp_path)
    assert [f.parent.name for f in files] == ["hour=10", "hour=12"]  # one file per hour of the flush
    assert len(read_log(tmp_path)) == 30
    window = read_log(tmp_path, MONDAY + pd.Timedelta(minutes=1), MONDAY + pd.Timedelta(hours=3))
    assert len(window) == 20 and window["request_id"].nunique() == 2


def test_a_failed_prediction_logs_nothing_and_a_failed_write_does_not_fail_the_answer(tmp_path):
    log = ServingLog(tmp_path, clock=lambda: MONDAY)

    def refuse(frame):
        raise ValueError("input lacks feature columns: days_to_expiry")

    with pytest.raises(ValueError):
        predict_and_log(refuse, requests_of(3), log, "7")
    assert read_log(tmp_path).empty
    short = predict_and_log(lambda frame: answers(len(frame) - 1), requests_of(3), log, "7")  # log refuses it
    assert len(short) == 2 and read_log(tmp_path).empty


def test_retention_deletes_day_folders_older_than_the_setting(tmp_path, monkeypatch):
    today = pd.Timestamp("2017-06-30 12:00", tz="UTC")
    for days_ago in (40, 31, 30, 1, 0):
        at = today - pd.Timedelta(days=days_ago)
        with ServingLog(tmp_path, retention_days=1000, clock=lambda: at) as log:
            log.append(loggable_inputs(requests_of(2)), answers(2), "7")
    day_folders = lambda: sorted(p.name for p in tmp_path.glob("date=*"))  # noqa: E731
    assert len(day_folders()) == 5

    monkeypatch.setenv("CHURN_SERVING_LOG_RETENTION_DAYS", "30")
    assert retention_days_from_env() == 30
    now = {"t": today}
    log = ServingLog(tmp_path, retention_days_from_env(), clock=lambda: now["t"])  # on opening
    assert day_folders() == ["date=2017-05-31", "date=2017-06-29", "date=2017-06-30"]
    now["t"] = today + pd.Timedelta(days=2)  # on writing, once the cut-off reaches a new day
    log.append(loggable_inputs(requests_of(2)), answers(2), "7")
    assert day_folders() == ["date=2017-06-29", "date=2017-06-30", "date=2017-07-02"]
    assert len(read_log(tmp_path)) == 6
    with pytest.raises(ValueError):
        ServingLog(tmp_path, retention_days=0)


def test_replay_sends_a_sample_through_the_servers_path_at_simulated_times(tmp_path):
    class PythonModel:  # what ModelRegistry.load_production returns: predict(context, frame)
        def predict(self, context, frame):
            return answers(len(frame))

    frame = requests_of(300)
    n = replay_requests(PythonModel(), frame, tmp_path, MONDAY, "9", sample=120, batch_rows=25, retention_days=30)
    logged = read_log(tmp_path)
    assert n == len(logged) == 120 and logged["request_id"].nunique() == 5
    assert set(logged["msno"]) <= set(frame["msno"]) and logged["msno"].is_unique
    assert logged["logged_at"].min() == MONDAY and logged["logged_at"].max() < MONDAY + pd.Timedelta(hours=10)
    assert (logged["model_version"] == "9").all()


# ---------------------------------------------------------------- crashes (subprocesses)


CRASH_BETWEEN_WRITE_AND_RENAME = """
import os, signal, sys
from pathlib import Path
from churn_assets.monitoring.serving_log import hour_dir, log_rows, write_temp
from churn_assets_tests.test_serving_log import MONDAY, answers, requests_of
root = Path(sys.argv[1])
directory = hour_dir(root, MONDAY)
directory.mkdir(parents=True)
temp = write_temp(log_rows(requests_of(50), answers(50), "7", MONDAY), directory / "never-renamed.parquet")
print(temp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_writer_killed_before_the_rename_leaves_no_parquet_and_its_temp_is_cleaned(tmp_path):
    proc = subprocess.run([sys.executable, "-c", CRASH_BETWEEN_WRITE_AND_RENAME, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    temp = Path(proc.stdout.strip())
    assert temp.exists() and temp.stat().st_size > 0  # the whole file was written, just never renamed
    assert not list(tmp_path.rglob("*.parquet")) and log_files(tmp_path) == [] and read_log(tmp_path).empty
    ServingLog(tmp_path, clock=lambda: MONDAY)  # the next writer to open the log
    assert not temp.exists()
    assert remove_stale_temp_files(tmp_path) == []


# ---------------------------------------------------------------- the real server (`make serve`)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A registry whose production alias is a toy model, and rows to send it."""
    root = tmp_path_factory.mktemp("serving_log")
    uri, version, frame, _ = toy_production(root)
    rows = frame[frame["target_month"] == MONTHS[3]].reset_index(drop=True)[["msno", *FEATURE_COLUMNS]]
    return {"root": root, "uri": uri, "version": version, "rows": rows}


def start_server(data_dir: Path, uri: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "CHURN_DATA_DIR": str(data_dir), "MLFLOW_TRACKING_URI": uri, "HOST": "127.0.0.1",
           "PORT": str(port)}
    data_dir.mkdir(parents=True, exist_ok=True)
    out = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "churn_assets.serve"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError(f"no server: {(data_dir / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.3)


def post(base: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}/invocations", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_served_rows_in_equal_rows_logged_and_no_secret_is_kept(store, tmp_path):
    data = tmp_path / "data"
    proc, base = start_server(data, store["uri"])
    try:
        first, second = store["rows"].iloc[:40].copy(), store["rows"].iloc[40:65].copy()
        first["api_key"] = SECRET  # an extra column, a top-level field and headers carrying a secret
        body = {**_split(first), "api_key": SECRET}
        status, answer = post(base, body, {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET})
        assert status == 200, answer
        status, answer2 = _post(f"{base}/invocations", _split(second))
        assert status == 200, answer2
        status, _ = _post(f"{base}/invocations", _split(second[FEATURE_COLUMNS].drop(columns=["days_to_expiry"])))
        assert status == 400  # refused: nothing answered, nothing logged
    finally:
        _stop(proc)
    logs = data / "serving_logs"
    logged = read_log(logs)
    sent = pd.concat([first, second], ignore_index=True)
    assert len(logged) == len(sent) == 65  # rows in = rows logged
    assert logged["request_id"].nunique() == 2 and (logged["model_version"] == store["version"]).all()
    assert logged["msno"].tolist() == sent["msno"].tolist()
    np.testing.assert_allclose(logged[FEATURE_COLUMNS[:6]].to_numpy(float), sent[FEATURE_COLUMNS[:6]].to_numpy(float))
    served = pd.DataFrame(answer["predictions"] + answer2["predictions"])
    np.testing.assert_allclose(logged["churn_probability"], served["churn_probability"], rtol=1e-9)
    assert logged[RESPONSE_COLUMNS[1:]].fillna("-").equals(served[RESPONSE_COLUMNS[1:]].fillna("-"))
    age = pd.Timestamp.now(tz="UTC") - logged["logged_at"]
    assert ((age >= pd.Timedelta(0)) & (age < pd.Timedelta(minutes=10))).all()  # UTC wall time
    assert list(logged.columns) == LOG_COLUMNS
    assert not any(SECRET in value for value in every_value(log_files(logs)))


@pytest.mark.slow
def test_a_server_killed_under_load_leaves_only_whole_files(store, tmp_path):
    data = tmp_path / "data"
    proc, base = start_server(data, store["uri"])
    rows = store["rows"]
    sent, answered, stop = [], [], threading.Event()

    def client(k: int) -> None:
        for i in range(1000):
            if stop.is_set():
                return
            batch = rows.sample(300, replace=True, random_state=k * 1000 + i).reset_index(drop=True)
            batch["msno"] = [f"c{k}-{i}-{j}" for j in range(len(batch))]
            sent.append(set(batch["msno"]))
            try:
                status, _ = _post(f"{base}/invocations", _split(batch))
            except OSError:  # the server is gone
                return
            if status == 200:
                answered.append(set(batch["msno"]))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-traffic: requests in flight, a file possibly mid-write
        proc.wait(timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        _stop(proc)
    assert len(answered) >= 6
    logs = data / "serving_logs"
    files = log_files(logs)
    assert files and all(f.suffix == ".parquet" and not f.name.startswith(".") for f in files)
    whole = sum(pq.ParquetFile(f).read().num_rows for f in files)  # every visible file reads to its end
    logged = read_log(logs)
    assert len(logged) == whole
    every_answered = set().union(*answered)
    assert every_answered <= set(logged["msno"]) <= set().union(*sent)  # an answered row is always logged
    assert logged.groupby("request_id").size().eq(300).all()  # no request half-logged
    ServingLog(logs)  # a restart clears what the killed server left mid-write
    assert not list(logs.rglob("*.tmp"))


@pytest.mark.slow
def test_the_demo_replays_a_scored_week_through_the_production_model(store, tmp_path):
    week = dt.date(2017, 4, 3)
    db = tmp_path / "churn.duckdb"
    features = store["rows"].iloc[:300].assign(week_start=week)
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA scoring")
        con.execute("CREATE TABLE scoring.scoring_features AS SELECT * FROM features")
    paths = SimpleNamespace(duckdb_path=db, mlflow_tracking_uri=store["uri"], serving_logs=tmp_path / "serving_logs")
    assert replay_scored_week(paths, week, sample=120) == 120
    assert replay_scored_week(paths, week + dt.timedelta(days=7)) == 0  # a week nobody scored
    logged = read_log(paths.serving_logs)
    assert len(logged) == 120 and (logged["model_version"] == store["version"]).all()
    assert logged["logged_at"].min() == pd.Timestamp("2017-04-03 08:00", tz="UTC")
    model, _ = load_production(store["uri"])
    sent = features.set_index("msno").loc[logged["msno"]]
    np.testing.assert_allclose(logged["churn_probability"], model.predict_proba(sent.reset_index()), rtol=1e-9)
