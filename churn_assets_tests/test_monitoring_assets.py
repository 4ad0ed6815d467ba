"""drift_report and model_performance against a real DuckDB file and a real MLflow sqlite store."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from churn_assets.features.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS
from churn_assets.monitoring.assets import drift_report, model_performance
from churn_assets.resources import Warehouse

WEEK = dt.date(2017, 3, 6)
MARCH = dt.date(2017, 3, 1)
RAW_SCHEMA = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"
SHIFTED = ["secs_7d", "secs_30d", "active_days_30d"]  # 3 of 32 columns: share 0.09 -> retrain


def features(n: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.gamma(2.0, 10.0, n) for c in FEATURE_COLUMNS})
    for c in CATEGORICAL_COLUMNS:
        frame[c] = rng.choice(["1", "2", "3"], n)
    frame["days_since_last_txn"] = rng.integers(1, 32, n).astype(float)  # the candidates' range
    if shift:
        frame[SHIFTED] = frame[SHIFTED] * 3 + 40
    return frame


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("churn", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    features(2000, 1, shift=False).to_parquet(ref_dir / "reference_features.parquet")
    rng = np.random.default_rng(2)
    pd.DataFrame({"msno": "x", "churn_probability": rng.beta(2, 8, 2000), "is_churn": 0}).to_parquet(
        ref_dir / "validation_scores.parquet")
    client.log_artifacts(run.info.run_id, str(ref_dir), "reference")
    client.log_metric(run.info.run_id, "valid_auc", 0.80)
    client.log_metric(run.info.run_id, "valid_log_loss", 0.40)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("churn_model")
    version = client.create_model_version("churn_model", f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version

    db = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA scoring")
    current = features(1500, 3, shift=True)
    current.insert(0, "msno", [f"m{i}" for i in range(len(current))])
    current.insert(0, "week_start", WEEK)
    # members on long plans are scored but not compared with the training reference
    current.loc[current.index[:100], "days_since_last_txn"] = 200.0
    con.execute("CREATE TABLE scoring.scoring_features AS SELECT * FROM current")
    scores = pd.DataFrame({"week_start": WEEK, "msno": current["msno"],
                           "membership_expire_date": WEEK + dt.timedelta(days=10),
                           "churn_probability": rng.beta(2, 8, len(current)), "model_version": str(version)})
    con.execute("CREATE TABLE scoring.churn_scores AS SELECT * FROM scores")
    con.close()
    mlflow.set_tracking_uri(None)  # forget any global URI an earlier test left behind ...
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # ... which in MLflow 3 also unsets the variable
    return {"db": db, "version": str(version), "tmp": tmp_path}


def materialize(asset, world, partition, config=None):
    return dg.materialize(
        [asset], partition_key=partition, resources={"warehouse": Warehouse(database=str(world["db"]))},
        run_config={"ops": {asset.op.name: {"config": config}}} if config else None,
    )


def test_drift_report_writes_tables_html_and_decision(world):
    result = materialize(drift_report, world, WEEK.isoformat(), {"sample_size": 1500})
    assert result.success
    meta = result.asset_materializations_for_node(drift_report.op.name)[0].metadata
    assert meta["decision"].value == "retrain"
    assert meta["drift_share"].value == pytest.approx(3 / len(FEATURE_COLUMNS))
    assert meta["prediction_drifted"].value is False
    assert "secs_30d" in meta["top_drifted_columns"].value
    html = world["tmp"] / "reports" / "drift" / "2017-03-06.html"
    assert html.exists() and meta["report_path"].value == str(html)

    con = duckdb.connect(str(world["db"]), read_only=True)
    row = con.execute("SELECT model_version, reference_rows, current_rows, n_columns, n_drifted, decision "
                      "FROM monitoring.drift_reports").fetchall()
    # 100 of the 1500 scored members are on long plans: scored, not compared
    assert row == [(world["version"], 1500, 1400, len(FEATURE_COLUMNS), 3, "retrain")]
    cols = con.execute("SELECT column_name, kind FROM monitoring.drift_columns WHERE drifted ORDER BY 1").fetchall()
    assert cols == sorted((c, "feature") for c in SHIFTED)
    assert con.execute("SELECT count(*) FROM monitoring.drift_columns WHERE kind = 'prediction'").fetchone()[0] == 1
    con.close()

    # re-run with other thresholds replaces the week's rows
    again = materialize(drift_report, world, WEEK.isoformat(), {"sample_size": 1500, "retrain_at": 0.02, "retune_at": 0.05})
    assert again.asset_materializations_for_node(drift_report.op.name)[0].metadata["decision"].value == "retune"
    con = duckdb.connect(str(world["db"]), read_only=True)
    assert con.execute("SELECT count(*), any_value(decision) FROM monitoring.drift_reports").fetchone() == (1, "retune")
    assert con.execute("SELECT count(*) FROM monitoring.drift_columns").fetchone()[0] == len(FEATURE_COLUMNS) + 1  # + prediction
    con.close()


def _labels_and_transactions(world, next_month_ingested: bool):
    con = duckdb.connect(str(world["db"]))
    con.execute(RAW_SCHEMA.read_text())
    con.execute("CREATE SCHEMA IF NOT EXISTS features")
    scores = con.execute("SELECT msno, churn_probability FROM scoring.churn_scores").df()
    rng = np.random.default_rng(5)
    labels = pd.DataFrame({"msno": scores["msno"], "target_month": MARCH, "last_expire": WEEK + dt.timedelta(days=10),
                           "renewal_gap_days": None,
                           "is_churn": (rng.random(len(scores)) < scores["churn_probability"]).astype(int)})
    con.execute("CREATE TABLE features.labels AS SELECT * FROM labels")
    if next_month_ingested:
        con.execute("INSERT INTO raw.transactions VALUES ('m0', 41, 30, 99, 99, 1, DATE '2017-04-02', "
                    "DATE '2017-05-02', 0, DATE '2017-04-01')")
    con.close()


def test_model_performance_waits_for_final_labels(world):
    _labels_and_transactions(world, next_month_ingested=False)
    result = materialize(model_performance, world, MARCH.isoformat())
    assert result.success
    assert result.asset_materializations_for_node(model_performance.op.name) == []
    con = duckdb.connect(str(world["db"]), read_only=True)
    assert not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'monitoring'").fetchone()[0]
    con.close()


def test_model_performance_compares_with_validation(world):
    _labels_and_transactions(world, next_month_ingested=True)
    result = materialize(model_performance, world, MARCH.isoformat(), {"auc_margin": 0.05})
    meta = result.asset_materializations_for_node(model_performance.op.name)[0].metadata
    con = duckdb.connect(str(world["db"]), read_only=True)
    perf = con.execute("SELECT * FROM monitoring.model_performance").df()
    con.close()
    assert len(perf) == 1 and perf.loc[0, "model_version"] == world["version"] and perf.loc[0, "n_scored"] == 1500
    assert perf.loc[0, "valid_auc"] == 0.80
    # labels drawn from the scores themselves: realised AUC ~0.7 < 0.80 - 0.05 -> retrain
    assert perf.loc[0, "auc"] < 0.75
    assert meta["decision"].value == "retrain" == perf.loc[0, "decision"]
    assert meta["valid_log_loss"].value == 0.40
