"""The Evidently workspace as the monitoring dashboard: what each snapshot holds, one project
and one snapshot per partition however often a week is re-run, the real `evidently ui` serving
the project and its panels over HTTP, and the drift / performance assets linking to it."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently.sdk.models import DashboardModel, PanelMetric
from evidently.sdk.panels import line_plot_panel

from churn_assets.defs.monitoring.assets import drift_report, model_performance
from churn_assets.monitoring import dashboard as dash
from churn_assets.monitoring.drift import prediction_drift
from churn_assets_tests.test_monitoring_assets import (  # noqa: F401 (world: the monitoring assets' fixture)
    MARCH, WEEK, _drift_evidence, _labels_and_transactions, client_of, materialize, world,
)

WEEKS = [dt.date(2017, 2, 27), dt.date(2017, 3, 6)]


def _columns(drifted: dict[str, float], quiet: tuple[str, ...] = ("bd", "city")) -> pd.DataFrame:
    rows = [{"column_name": c, "method": "wasserstein", "score": 0.3, "threshold": 0.1, "default_threshold": 0.1,
             "drifted": True, "weight": w} for c, w in drifted.items()]
    rows += [{"column_name": c, "method": "wasserstein", "score": 0.01, "threshold": 0.1, "default_threshold": 0.1,
              "drifted": False, "weight": 0.1} for c in quiet]
    return pd.DataFrame(rows)


def _row(week: dt.date, share: float, decision: str, version: str = "3") -> dict:
    return {"week_start": week, "model_version": version, "drift_share": share, "column_share": 0.5,
            "n_drifted": 2, "n_columns": 4, "level": decision, "decision": decision}


def _scores(seed: int, a: float = 2.0, n: int = 1200) -> pd.DataFrame:
    return pd.DataFrame({"churn_probability": np.random.default_rng(seed).beta(a, 8, n), "model_version": "3"})


def _log_week(path: Path, week: dt.date, share: float, decision: str = "retrain", shift: float = 2.0):
    current, reference = _scores(1, shift), _scores(2)
    prediction = prediction_drift(reference, current, sample_size=1000, seed=0)
    return dash.log_drift_week(path, week, _row(week, share, decision), _columns({"secs_7d": share / 2, "city_x": share / 2}),
                               prediction, reference, current, {"A": 10, "B": 30, "C": 60}, retrain_at=0.01,
                               retune_at=0.25, sample_size=1000, seed=0, links={"dagster_run_id": f"run-{week}"})


def _perf(month: dt.date) -> pd.DataFrame:
    return pd.DataFrame([
        {"target_month": month, "model_version": "3", "lead_band": "first_score", "n_scored": 900, "auc": 0.74,
         "auc_ci_low": 0.71, "auc_ci_high": 0.77, "log_loss": 0.41, "relative_log_loss": 0.9, "valid_auc": 0.78,
         "valid_log_loss": 0.39, "churn_rate": 0.2},
        {"target_month": month, "model_version": "3", "lead_band": "0-6", "n_scored": 950, "auc": 0.99,
         "log_loss": 0.1},  # a short band: never on the dashboard
    ])


RETENTION = {"target_month": MARCH, "relative_reduction": 0.18, "rr_ci_low": 0.05, "rr_ci_high": 0.3,
             "churn_rate_treated": 0.16, "churn_rate_control": 0.2, "n_treated": 800, "n_control": 200}


def _values(snapshot_model) -> dict[tuple, float]:
    out = {}
    for result in snapshot_model.metric_results.values():
        params = result.metric_value_location.metric.params
        key = (params["type"].rsplit(":", 1)[-1], params.get("quantity") or params.get("column"),
               params.get("label", ""), params.get("model_version", ""))
        out[key] = float(result.value)
    return out


def test_a_week_snapshot_holds_evidently_prediction_drift_and_the_pipelines_numbers(tmp_path):
    current, reference = _scores(1, 3.0), _scores(2)
    prediction = prediction_drift(reference, current, sample_size=1000, seed=0)
    link = _log_week(tmp_path / "ws", WEEK, 0.3, "retune", shift=3.0)
    workspace, project = dash.open_project(tmp_path / "ws")
    snapshot = workspace.get_run(project.id, link.snapshot_id)
    values = _values(snapshot)

    assert snapshot.timestamp == dt.datetime(2017, 3, 6) and snapshot.tags == ["drift"]
    assert snapshot.metadata == {"kind": "drift", "partition": "2017-03-06", "model_version": "3",
                                 "decision": "retune", "dagster_run_id": "run-2017-03-06"}
    # Evidently's own test of the output distribution, on the samples the asset tested
    assert values[("ValueDrift", "churn_probability", "", "")] == pytest.approx(prediction["score"])
    assert values[("MonitoringValue", "drift_share", "", "")] == 0.3
    assert values[("MonitoringValue", "retrain_at", "", "")] == 0.01
    assert values[("MonitoringValue", "retune_at", "", "")] == 0.25
    assert values[("MonitoringValue", "drift_decision", "", "")] == 2.0  # retune
    assert values[("MonitoringValue", "scoring_version", "", "")] == 3.0
    # the drifted columns' gain weights add up to the share; quiet columns are not logged
    weights = {k[2]: v for k, v in values.items() if k[1] == "column_weight"}
    assert weights == {"secs_7d": 0.15, "city_x": 0.15}
    assert {k[2]: v for k, v in values.items() if k[1] == "bucket_members"} == {"A": 10, "B": 30, "C": 60}
    assert values[("MonitoringValue", "scored_rows", "", "")] == 100
    assert link.url == f"http://127.0.0.1:8000/projects/{project.id}/reports/{link.snapshot_id}"


def test_a_month_snapshot_holds_the_headline_per_version_and_the_retention_effect(tmp_path):
    link = dash.log_performance_month(tmp_path / "ws", MARCH, _perf(MARCH), "retrain", "3", RETENTION)
    workspace, project = dash.open_project(tmp_path / "ws")
    snapshot = workspace.get_run(project.id, link.snapshot_id)
    values = _values(snapshot)
    assert snapshot.timestamp == dt.datetime(2017, 3, 1) and snapshot.tags == ["performance"]
    assert values[("MonitoringValue", "auc", "", "3")] == 0.74  # the first score's, not the 0-6 band's
    assert values[("MonitoringValue", "valid_auc", "", "3")] == 0.78
    assert values[("MonitoringValue", "log_loss", "", "3")] == 0.41
    assert values[("MonitoringValue", "performance_decision", "", "")] == 1.0
    assert values[("MonitoringValue", "relative_reduction", "", "")] == 0.18
    # before the retention month row exists: no retention numbers, no made-up zeros
    bare = workspace.get_run(project.id, dash.log_performance_month(tmp_path / "ws", MARCH, _perf(MARCH), "none", "3").snapshot_id)
    assert not any(k[1] == "relative_reduction" for k in _values(bare))
    assert dash.month_row(pd.DataFrame([RETENTION]), MARCH)["relative_reduction"] == 0.18
    assert dash.month_row(pd.DataFrame([RETENTION]), dt.date(2017, 4, 1)) is None


def test_re_adding_a_week_replaces_it_and_the_project_and_panels_exist_once(tmp_path):
    path = tmp_path / "ws"
    first = _log_week(path, WEEKS[0], 0.02)
    again = _log_week(path, WEEKS[0], 0.03)
    other = _log_week(path, WEEKS[1], 0.05)
    month = dash.log_performance_month(path, MARCH, _perf(MARCH), "none", "3", RETENTION)
    month_again = dash.log_performance_month(path, MARCH, _perf(MARCH), "none", "3", RETENTION)
    assert (first.replaced, again.replaced, other.replaced, month.replaced, month_again.replaced) == (0, 1, 0, 0, 1)

    workspace, project = dash.open_project(path)
    assert [p.name for p in workspace.list_projects()] == ["churn"]
    runs = {str(s) for s in workspace.list_runs(project.id)}
    assert runs == {again.snapshot_id, other.snapshot_id, month_again.snapshot_id}
    shares = {workspace.get_run(project.id, s).metadata["partition"]: _values(workspace.get_run(project.id, s))
              .get(("MonitoringValue", "drift_share", "", "")) for s in runs}
    assert shares == {"2017-02-27": 0.03, "2017-03-06": 0.05, "2017-03-01": None}  # the re-run's value

    dashboard = workspace.get_dashboard(project.id)
    titles = [p.title for p in dashboard.panels]
    assert len(titles) == len(set(titles)) == len(dash._panels())
    assert [t.title for t in dashboard.tabs] == ["Drift", "Performance", "Scoring", "Retention"]
    assert all(len(t.panels) == len(set(t.panels)) for t in dashboard.tabs)
    # a panel someone added in the UI survives; ours are not added twice
    extra = line_plot_panel("my panel", [PanelMetric(metric="ValueDrift")])
    workspace.save_dashboard(project.id, DashboardModel(tabs=dashboard.tabs, panels=[*dashboard.panels, extra]))
    _log_week(path, WEEKS[1], 0.06)
    workspace, project = dash.open_project(path)
    after = workspace.get_dashboard(project.id)
    assert [p.title for p in after.panels] == [*titles, "my panel"]
    assert len(workspace.list_runs(project.id)) == 3


def _log_in_child(args) -> str:
    path, week, share = args
    return _log_week(Path(path), week, share).snapshot_id


@pytest.mark.slow
def test_parallel_partitions_share_one_project_and_keep_one_snapshot_each(tmp_path):
    """Runs of several partitions at once (a backfill) go through the workspace's lock."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    path = tmp_path / "ws"
    jobs = [(str(path), WEEKS[k % 2], 0.01 * k) for k in range(6)]  # each week three times
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_log_in_child, jobs))
    workspace, project = dash.open_project(path)
    assert [p.name for p in workspace.list_projects()] == ["churn"]
    partitions = [workspace.get_run(project.id, s).metadata["partition"] for s in workspace.list_runs(project.id)]
    assert sorted(partitions) == ["2017-02-27", "2017-03-06"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
        return response.status, body


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"evidently ui exited with {process.returncode}")
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"evidently ui did not answer {url} within {timeout} s")


@pytest.mark.slow
def test_evidently_ui_serves_the_project_its_panels_and_series(tmp_path):
    path = tmp_path / "evidently"
    week_links = [_log_week(path, week, share) for week, share in zip(WEEKS, (0.02, 0.3))]
    month = dash.log_performance_month(path, MARCH, _perf(MARCH), "retrain", "3", RETENTION)
    port = _free_port()
    evidently = Path(sys.executable).parent / "evidently"
    env = {**os.environ, "DO_NOT_TRACK": "1"}  # no usage telemetry leaves the machine
    process = subprocess.Popen([str(evidently), "ui", "--workspace", str(path), "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/api/version", process)
        projects = json.loads(_get(f"{base}/api/projects")[1])
        assert [p["name"] for p in projects] == ["churn"]
        pid = projects[0]["id"]
        assert pid == month.project_id == week_links[0].project_id

        dashboard = json.loads(_get(f"{base}/api/v2/dashboards/{pid}")[1])
        titles = {p["title"] for p in dashboard["panels"]}
        assert {"Drift share per week, with the policy's thresholds",
                "Drifted columns: each one's share of the model's gain",
                "Prediction drift: churn_probability vs the model's validation scores",
                "One-month-ahead AUC per month and model version",
                "One-month-ahead log loss per month and model version",
                "Members scored per week and bucket",
                "Retention effect: relative churn reduction, treated vs control, per month"} <= titles
        snapshots = json.loads(_get(f"{base}/api/projects/{pid}/snapshots")[1])
        assert sorted(s["metadata"]["partition"] for s in snapshots) == ["2017-02-27", "2017-03-01", "2017-03-06"]

        # the series a panel draws, as the UI asks for them
        panel = next(p for p in dashboard["panels"] if p["title"].startswith("Drift share"))
        series = _post(f"{base}/api/v2/snapshots/{pid}/data_series_batch", {"series_filter": [
            {"tags": v["tags"], "metadata": v["metadata"], "metric": v["metric"], "metric_labels": v["metric_labels"]}
            for v in panel["values"]]})
        by_quantity = {s["params"]["quantity"]: s["values"] for s in series["series"]}
        assert by_quantity["drift_share"] == [0.02, 0.3]
        assert by_quantity["retrain_at"] == [0.01, 0.01] and by_quantity["retune_at"] == [0.25, 0.25]
        assert [s["timestamp"][:10] for s in series["sources"]] == ["2017-02-27", "2017-03-06"]
        auc = next(p for p in dashboard["panels"] if p["title"].startswith("One-month-ahead AUC"))
        series = _post(f"{base}/api/v2/snapshots/{pid}/data_series_batch", {"series_filter": [
            {"tags": v["tags"], "metadata": {}, "metric": v["metric"], "metric_labels": v["metric_labels"]}
            for v in auc["values"]]})
        assert {(s["params"]["quantity"], s["params"]["model_version"]): s["values"] for s in series["series"]} == {
            ("auc", "3"): [0.74], ("valid_auc", "3"): [0.78]}

        # the link the drift asset writes opens the snapshot's page, whose widgets the API serves
        link = week_links[1]
        assert link.url.endswith(f"/projects/{pid}/reports/{link.snapshot_id}")
        assert _get(base + link.url.split("127.0.0.1:8000", 1)[1])[0] == 200
        status, body = _get(f"{base}/api/projects/{pid}/{link.snapshot_id}/data")
        data = json.loads(body)
        assert status == 200 and (json.loads(data) if isinstance(data, str) else data)["widgets"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode is not None


# ---------------------------------------------------------------- the assets link to it


@pytest.mark.slow
def test_drift_report_links_its_snapshot_and_the_scoring_versions_mlflow_run(world):
    _drift_evidence(world)
    first = materialize(drift_report, world, WEEK.isoformat()).asset_materializations_for_node(drift_report.op.name)
    meta = first[0].metadata
    workspace, project = dash.open_project(world["tmp"] / "evidently")
    [snapshot_id] = [str(s) for s in workspace.list_runs(project.id)]
    assert meta["evidently_snapshot"].url == f"http://127.0.0.1:8000/projects/{project.id}/reports/{snapshot_id}"
    assert meta["evidently_dashboard"].url == f"http://127.0.0.1:8000/projects/{project.id}"
    run_id = client_of(world).get_model_version("churn_model", world["version"]).run_id
    assert meta["mlflow_run"].url.endswith(f"/runs/{run_id}")
    snapshot = workspace.get_run(project.id, snapshot_id)
    assert snapshot.metadata["mlflow_run_url"] == meta["mlflow_run"].url
    assert snapshot.metadata["dagster_run_url"].startswith("http://127.0.0.1:3000/runs/")
    values = _values(snapshot)
    assert values[("MonitoringValue", "drift_share", "", "")] == pytest.approx(meta["drift_share"].value)
    assert values[("MonitoringValue", "n_drifted", "", "")] == meta["n_drifted"].value
    assert values[("ValueDrift", "churn_probability", "", "")] == pytest.approx(meta["prediction_drift_score"].value)

    again = materialize(drift_report, world, WEEK.isoformat()).asset_materializations_for_node(drift_report.op.name)
    [replaced] = [str(s) for s in workspace.list_runs(project.id)]  # one snapshot for the week
    assert replaced != snapshot_id and again[0].metadata["evidently_snapshot"].url.endswith(replaced)


@pytest.mark.slow
def test_model_performance_adds_its_month_to_the_dashboard(world):
    _labels_and_transactions(world, next_month_ingested=True)
    result = materialize(model_performance, world, MARCH.isoformat(), {"n_bootstrap": 50})
    meta = result.asset_materializations_for_node(model_performance.op.name)[0].metadata
    workspace, project = dash.open_project(world["tmp"] / "evidently")
    [snapshot_id] = [str(s) for s in workspace.list_runs(project.id)]
    assert meta["evidently_snapshot"].url.endswith(f"/projects/{project.id}/reports/{snapshot_id}")
    values = _values(workspace.get_run(project.id, snapshot_id))
    assert values[("MonitoringValue", "auc", "", world["version"])] == pytest.approx(meta["auc"].value)
    assert values[("MonitoringValue", "valid_auc", "", world["version"])] == 0.80
    assert not any(k[1] == "relative_reduction" for k in values)  # no retention experiment here
