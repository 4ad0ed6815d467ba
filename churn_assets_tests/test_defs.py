"""The code location loads, and its public surface is exactly the contract: every asset key,
check, job, sensor, schedule and resource key. A rename shows up here first."""
import dagster as dg

ASSETS = [
    "features/labels", "features/member_features", "kpi/monthly_churn", "marketing/retention_effect",
    "marketing/treatments", "ml/churn_model",
    "ml/production_model",
    "monitoring/drift_report", "monitoring/model_performance", "monitoring/serving_drift", "raw/churn_labels",
    "raw/members",
    "raw/transactions", "raw/user_logs", "reports/weekly_churn_report", "scoring/churn_scores",
    "scoring/scoring_features",
]
CHECKS = [
    "features/labels:agrees_with_published_labels", "marketing/treatments:control_balance",
    "ml/churn_model:churn_model_automated_tests",
    *(f"raw/{source}:{check}" for source in ("churn_labels", "members", "transactions", "user_logs")
      for check in ("gx_blocking", "gx_warnings", "rows_accounted")),
]
JOBS = ["features_job", "ingest_job", "performance_job", "retune_job", "serving_drift_job", "train_job",
        "weekly_scoring_job"]
SENSORS = ["drift_retrain_sensor", "landing_sensor"]
SCHEDULES = ["serving_drift_schedule", "weekly_scoring_schedule"]
RESOURCES = ["mlflow", "registry", "smtp", "storage", "warehouse"]


def test_definitions_snapshot(defs):
    defs.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert sorted("/".join(k.path) for k in repo.asset_graph.get_all_asset_keys()) == ASSETS
    assert sorted(f"{'/'.join(c.asset_key.path)}:{c.name}" for c in repo.asset_graph.asset_check_keys) == sorted(CHECKS)
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == JOBS
    assert sorted(s.name for s in repo.sensor_defs) == SENSORS
    assert sorted(s.name for s in repo.schedule_defs) == SCHEDULES
    assert sorted(defs.resources) == RESOURCES


def test_every_resource_requirement_is_met(defs):
    """Each asset, check and sensor asks only for resources the location provides (the daemon
    would otherwise fail a sensor's tick, not the load)."""
    provided = set(defs.resources) | {"io_manager"}
    for node in [*defs.assets, *defs.asset_checks, *defs.sensors]:
        assert set(node.required_resource_keys) <= provided, node
    assert "storage" in defs.get_sensor_def("landing_sensor").required_resource_keys


def test_production_environment_names_what_is_missing(monkeypatch):
    from churn_assets.defs.resources import resources_for

    for name in ("CHURN_DATA_DIR", "CHURN_DUCKDB_PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    try:
        resources_for("production")
    except RuntimeError as exc:
        assert "CHURN_DATA_DIR" in str(exc)
    else:
        raise AssertionError("production resources built without their locations")
    monkeypatch.setenv("CHURN_DATA_DIR", "/srv/churn/data")
    monkeypatch.setenv("CHURN_DUCKDB_PATH", "/srv/churn/warehouse/churn.duckdb")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@db/mlflow")
    resources = resources_for("production")
    assert isinstance(resources["registry"].tracking_uri, (str, dg.EnvVar))
    assert sorted(resources) == RESOURCES
