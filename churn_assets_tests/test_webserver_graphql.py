"""The UI checked as a client would: `dagster-webserver` on a free port with the
project's workspace, its GraphQL API asked for the asset graph, jobs, schedules
and sensors, one ingest run launched through the API and watched to success.
The server and everything it started are stopped by process group."""
from __future__ import annotations

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

import pytest
import yaml

from churn_assets_tests.conftest import deliver, repo_instance_config

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`

REPO = Path(__file__).resolve().parents[1]
MONTH, PARTITION = "2016-09", "2016-09-01"

CONTRACT_ASSETS = {"raw/members", "raw/transactions", "raw/user_logs", "raw/churn_labels",
                   "features/labels", "features/member_features", "kpi/monthly_churn"}
LATER_ASSETS = {"ml/churn_model", "scoring/churn_scores", "reports/weekly_churn_report",
                "monitoring/drift_report", "monitoring/model_performance"}
CONTRACT_JOBS, LATER_JOBS = {"ingest_job"}, {"train_job", "retune_job", "weekly_scoring_job"}
CONTRACT_SENSORS, LATER_SENSORS = {"landing_sensor"}, {"drift_retrain_sensor"}
LATER_SCHEDULES = {"weekly_scoring_schedule"}

REPOSITORY_QUERY = """
query Repository {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        schedules { name cronSchedule pipelineName }
        sensors { name targets { pipelineName } }
        assetNodes {
          assetKey { path }
          groupName
          dependencyKeys { path }
          assetChecksOrError {
            __typename
            ... on AssetChecks { checks { name blocking } }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}"""

LOCATIONS_QUERY = """
query Locations {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}"""

LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } assetMaterializations { assetKey { path } partition } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.loads(response.read())

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.base + "/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]


def _wait(predicate, timeout: float, what: str, server: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dagster-webserver exited ({server.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            value = predicate()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-3000:]}")


def _instance_home(tmp_path: Path) -> Path:
    """The project's dagster.yaml, except that a launched run starts at once
    (DefaultRunCoordinator) instead of waiting in the queue for a daemon."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = repo_instance_config(tmp_path / "dagster")
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    config.get("concurrency", {}).pop("runs", None)  # queue limits belong to the QueuedRunCoordinator
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def webserver(tmp_path, data_dir, tiny_world):
    deliver(tiny_world, data_dir, MONTH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_SMTP_", "DAGSTER_PG_"))}
    env.update(DAGSTER_HOME=str(_instance_home(tmp_path)), CHURN_DATA_DIR=str(data_dir),
               MLFLOW_TRACKING_URI=f"sqlite:///{data_dir}/mlflow/mlflow.db", GX_ANALYTICS_ENABLED="false")
    port, log = _free_port(), tmp_path / "webserver.log"
    webserver_bin = Path(sys.executable).with_name("dagster-webserver")
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(webserver_bin), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    client = Client(port)
    try:
        _wait(lambda: client.get("/server_info"), 60, "/server_info", server, log)

        def loaded():
            entries = client.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            return entries if entries and all(e["loadStatus"] == "LOADED" for e in entries) else None

        entries = _wait(loaded, 90, "the code location to load", server, log)
        errors = [e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
        assert not errors, errors
        yield client, server, log
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _path(key: dict) -> str:
    return "/".join(key["path"])


def test_the_ui_serves_the_asset_graph_and_runs_a_materialisation(webserver, data_dir):
    from churn_assets.definitions import build_definitions

    client, server, log = webserver
    assert "dagster_webserver_version" in client.get("/server_info")

    # What the code defines, seen in-process: the UI must show exactly this.
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    defined = {k.to_user_string(): k for k in graph.get_all_asset_keys()}
    defined_checks = {}
    for check in graph.asset_check_keys:
        defined_checks.setdefault(check.asset_key.to_user_string(), set()).add(check.name)

    result = client.graphql(REPOSITORY_QUERY)["repositoriesOrError"]
    assert result["__typename"] == "RepositoryConnection", result
    (repo,) = result["nodes"]
    nodes = {_path(n["assetKey"]): n for n in repo["assetNodes"]}

    assert CONTRACT_ASSETS <= set(nodes)
    assert LATER_ASSETS & set(defined) <= set(nodes)
    assert set(nodes) == set(defined)
    for name, node in nodes.items():
        assert {_path(d) for d in node["dependencyKeys"]} == {
            k.to_user_string() for k in graph.get(defined[name]).parent_keys}, name
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", checks
        assert {c["name"] for c in checks["checks"]} == defined_checks.get(name, set()), name
    # a few edges and checks a user relies on, spelled out
    assert "raw/transactions" in {_path(d) for d in nodes["features/labels"]["dependencyKeys"]}
    assert {"features/labels", "raw/members"} <= {_path(d) for d in nodes["features/member_features"]["dependencyKeys"]}
    raw_checks = {c["name"]: c["blocking"] for c in nodes["raw/transactions"]["assetChecksOrError"]["checks"]}
    assert raw_checks == {"gx_blocking": True, "gx_warnings": False, "rows_accounted": True}

    jobs = {j["name"] for j in repo["jobs"]} - {"__ASSET_JOB"}
    sensors = {s["name"]: {t["pipelineName"] for t in s["targets"] or []} for s in repo["sensors"]}
    schedules = {s["name"]: s for s in repo["schedules"]}
    defined_jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert CONTRACT_JOBS | (LATER_JOBS & defined_jobs) <= jobs
    assert CONTRACT_SENSORS <= set(sensors) and sensors["landing_sensor"] == {"ingest_job"}
    if "drift_retrain_sensor" in {s.name for s in defs.sensors or []}:
        assert LATER_SENSORS <= set(sensors)
    if "weekly_scoring_job" in defined_jobs:
        assert LATER_SCHEDULES <= set(schedules)
        assert schedules["weekly_scoring_schedule"]["pipelineName"] == "weekly_scoring_job"

    # Launch one ingest partition through the API, as the launchpad does.
    params = {
        "selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                     "jobName": "ingest_job"},
        # one process for the run's steps: a multiprocess run pays a code import per step
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]},
    }
    launched = client.graphql(LAUNCH_MUTATION, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        run = client.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    run = _wait(finished, 120, f"run {run_id} to finish", server, log)
    assert run["status"] == "SUCCESS", run
    materialized = {(_path(m["assetKey"]), m["partition"]) for m in run["assetMaterializations"]}
    assert {(key, PARTITION) for key in ("raw/members", "raw/transactions", "raw/user_logs")} <= materialized

    # The run wrote the test's warehouse, not the project's.
    import duckdb

    with duckdb.connect(str(data_dir / "warehouse" / "churn.duckdb"), read_only=True) as con:
        months = con.execute("SELECT DISTINCT partition_month::VARCHAR FROM raw.transactions").fetchall()
    assert months == [(PARTITION,)]
