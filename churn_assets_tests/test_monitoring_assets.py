"""drift_report and model_performance against a real DuckDB file and a real MLflow sqlite store,
passed as resources (warehouse, registry, storage); one direct call with a stub registry."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS
from churn_assets.defs.monitoring.assets import DriftConfig, PerformanceConfig, drift_report, model_performance
from churn_assets.defs.resources import ModelRegistry, Storage, Warehouse

WEEK = dt.date(2017, 3, 6)
MARCH = dt.date(2017, 3, 1)
RAW_SCHEMA = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"
SHIFTED = ["secs_7d", "secs_30d", "active_days_30d"]  # 3 of 32 columns


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
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path))  # where publish() puts the analysts' Parquet
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the store comes from the registry resource only
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
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
    return {"db": db, "version": str(version), "tmp": tmp_path, "uri": uri}


def client_of(world) -> MlflowClient:
    return MlflowClient(tracking_uri=world["uri"], registry_uri=world["uri"])


def resources(world, registry: ModelRegistry | None = None) -> dict:
    return {"warehouse": Warehouse(database=str(world["db"])),
            "registry": registry or ModelRegistry(tracking_uri=world["uri"]),
            "storage": Storage(data_dir=str(world["tmp"]))}


def materialize(asset, world, partition, config=None):
    return dg.materialize(
        [asset], partition_key=partition, resources=resources(world),
        run_config={"ops": {asset.op.name: {"config": config}}} if config else None,
    )


# gain shares of the production model: the shifted columns carry 10 % of it
GAINS = {"secs_7d": 2.0, "secs_30d": 5.0, "active_days_30d": 3.0, "last_is_auto_renew": 50.0, "registered_via": 40.0}
WINDOW = [dt.date(2016, 11, 1), dt.date(2016, 12, 1), dt.date(2017, 1, 1), dt.date(2017, 2, 1)]
STATIONARY_WEEK = dt.date(2016, 12, 5)  # inside the training window


def _drift_evidence(world, importance: bool = True, months: bool = True) -> None:
    """The version's reference becomes its four-month training window (target_month) and its
    feature importance is logged, as the model domain logs them."""
    client = client_of(world)
    run_id = client.get_model_version("churn_model", world["version"]).run_id
    out = world["tmp"] / "evidence"
    (out / "reference").mkdir(parents=True, exist_ok=True)
    (out / "evaluation").mkdir(exist_ok=True)
    reference = pd.concat([features(2000, 20 + k, shift=False).assign(target_month=m) for k, m in enumerate(WINDOW)],
                          ignore_index=True)
    path = out / "reference" / "reference_features.parquet"
    (reference if months else reference.drop(columns="target_month")).to_parquet(path)
    client.log_artifact(run_id, str(path), "reference")
    if importance:
        pd.DataFrame({"feature": list(GAINS), "gain": list(GAINS.values()), "split": 1}).to_csv(
            out / "evaluation" / "feature_importance.csv", index=False)
        client.log_artifact(run_id, str(out / "evaluation" / "feature_importance.csv"), "evaluation")
    client.set_model_version_tag("churn_model", world["version"], "trained_through", "2017-02-01")


def _add_week(world, week: dt.date, shift: bool, seed: int) -> None:
    """Scoring features and scores of another week, like the fixture's."""
    frame = features(1500, seed, shift=shift)
    frame.insert(0, "msno", [f"w{seed}_{i}" for i in range(len(frame))])
    frame.insert(0, "week_start", week)
    scores = pd.DataFrame({"week_start": week, "msno": frame["msno"], "membership_expire_date": week + dt.timedelta(days=10),
                           "churn_probability": np.random.default_rng(seed).beta(2, 8, len(frame)),
                           "model_version": world["version"]})
    con = duckdb.connect(str(world["db"]))
    con.execute("INSERT INTO scoring.scoring_features BY NAME SELECT * FROM frame")
    con.execute("INSERT INTO scoring.churn_scores BY NAME SELECT * FROM scores")
    con.close()


def _meta(result):
    return result.asset_materializations_for_node(drift_report.op.name)[0].metadata


@pytest.mark.slow
def test_drift_report_weights_calibrates_and_acts_on_the_second_week(world):
    _drift_evidence(world)
    _add_week(world, STATIONARY_WEEK, shift=False, seed=30)
    html = world["tmp"] / "reports" / "drift" / "2017-03-06.html"

    first = _meta(materialize(drift_report, world, WEEK.isoformat()))
    # 10 % of the gain drifted: level retrain, but a level must hold two weeks before it acts
    assert first["drift_share"].value == pytest.approx(0.10)
    assert first["column_share"].value == pytest.approx(3 / len(FEATURE_COLUMNS)) and first["n_drifted"].value == 3
    assert (first["level"].value, first["decision"].value, first["previous_level"].value) == ("retrain", "none", "")
    assert first["report_path"].value == "" and not html.exists()  # nothing to act on: no HTML
    assert first["model_version"].value == world["version"]
    assert first["model_trained_through"].value == "2017-02-01" and first["trainable_through"].value == ""
    assert first["weight_source"].value == "gain"
    thresholds = first["thresholds"].value
    assert thresholds["source"] == "calibrated" and thresholds["stationary_months"] == 4
    assert thresholds["stationary_weeks"] == 1 and thresholds["retrain_at"] == 0.01
    assert {c["column"]: c["weight"] for c in first["top_drifted"].value} == {"secs_30d": 0.05, "active_days_30d": 0.03,
                                                                                "secs_7d": 0.02}
    assert first["prediction_drifted"].value is False

    _add_week(world, WEEK + dt.timedelta(days=7), shift=True, seed=31)
    second = _meta(materialize(drift_report, world, "2017-03-13"))
    assert (second["level"].value, second["previous_level"].value, second["decision"].value) == ("retrain",) * 3
    html2 = world["tmp"] / "reports" / "drift" / "2017-03-13.html"
    assert html2.exists() and second["report_path"].value == str(html2)  # acting: the HTML is rendered

    con = duckdb.connect(str(world["db"]), read_only=True)
    rows = con.execute("SELECT week_start::VARCHAR, model_version, reference_rows, current_rows, n_columns, n_drifted, "
                       "round(drift_share, 6), round(column_share, 6), level, decision, report_path <> '', "
                       "weight_source, threshold_source FROM monitoring.drift_reports ORDER BY 1").fetchall()
    # 100 of the 1500 scored members of WEEK are on long plans: scored, not compared
    assert rows == [("2017-03-06", world["version"], 5000, 1400, 32, 3, 0.1, round(3 / 32, 6), "retrain", "none",
                     False, "gain", "calibrated"),
                    ("2017-03-13", world["version"], 5000, 1500, 32, 3, 0.1, round(3 / 32, 6), "retrain", "retrain",
                     True, "gain", "calibrated")]
    cols = con.execute("SELECT column_name, kind, weight FROM monitoring.drift_columns "
                       "WHERE drifted AND week_start = ? ORDER BY 1", [WEEK]).fetchall()
    assert [(c, k) for c, k, _ in cols] == sorted((c, "feature") for c in SHIFTED)
    assert sum(w for *_, w in cols) == pytest.approx(0.10)
    assert con.execute("SELECT count(*) FROM monitoring.drift_columns WHERE kind = 'prediction'").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM monitoring.drift_columns WHERE threshold < default_threshold").fetchone()[0] == 0
    stored = con.execute("SELECT count(DISTINCT column_name), any_value(model_version) "
                         "FROM monitoring.drift_thresholds").fetchone()
    assert stored == (len(FEATURE_COLUMNS), world["version"])  # calibrated once, reused by the second week
    con.close()

    # on demand only: 'never' leaves no page behind, even for a week that acts
    never = _meta(materialize(drift_report, world, "2017-03-13", {"render_html": "never"}))
    assert never["decision"].value == "retrain" and never["report_path"].value == "" and not html2.exists()
    always = _meta(materialize(drift_report, world, WEEK.isoformat(), {"render_html": "always"}))
    assert always["decision"].value == "none" and html.exists()
    # other thresholds: 10 % of the gain is below a 0.2 retrain level
    higher = _meta(materialize(drift_report, world, "2017-03-13", {"retrain_at": 0.2, "retune_at": 0.5}))
    assert (higher["level"].value, higher["decision"].value) == ("none", "none")
    con = duckdb.connect(str(world["db"]), read_only=True)
    assert con.execute("SELECT count(*) FROM monitoring.drift_reports").fetchone()[0] == 2  # weeks replaced, not added
    con.close()


@pytest.mark.slow
def test_drift_report_on_an_old_run_and_an_old_table(world):
    """A version logged before importance and target_month, and a drift_reports table written
    before the new columns: equal weights, Evidently's thresholds, columns added."""
    con = duckdb.connect(str(world["db"]))
    con.execute("CREATE SCHEMA monitoring")
    con.execute("CREATE TABLE monitoring.drift_reports (week_start DATE, model_version VARCHAR, reference_rows BIGINT, "
                "current_rows BIGINT, n_columns BIGINT, n_drifted BIGINT, drift_share DOUBLE, decision VARCHAR, "
                "report_path VARCHAR)")
    con.execute("INSERT INTO monitoring.drift_reports VALUES ('2017-02-27', ?, 2000, 1400, 32, 3, 0.09, 'retrain', '')",
                [world["version"]])
    con.close()
    meta = _meta(materialize(drift_report, world, WEEK.isoformat()))
    assert meta["weight_source"].value == "equal" and meta["thresholds"].value["source"] == "evidently defaults"
    assert meta["drift_share"].value == pytest.approx(3 / len(FEATURE_COLUMNS)) == meta["column_share"].value
    # the old row's decision stands in for its level: two weeks at retrain under the same version act
    assert (meta["previous_level"].value, meta["level"].value, meta["decision"].value) == ("retrain", "retrain", "retrain")
    con = duckdb.connect(str(world["db"]), read_only=True)
    assert con.execute("SELECT level, column_share > 0 FROM monitoring.drift_reports WHERE week_start = ?",
                       [WEEK]).fetchone() == ("retrain", True)
    assert con.execute("SELECT level FROM monitoring.drift_reports WHERE week_start = '2017-02-27'").fetchone() == (None,)
    con.close()


LATE = 100  # members first scored 4 days before expiry: out of the headline


def _labels_and_transactions(world, next_month_ingested: bool):
    """March labels for the scored members (expiring 03-31: the 03-06 score is 25 days ahead),
    a last score 4 days before expiry that already sees the decision, and LATE members scored
    only then; calibrated validation scores and a trained_through tag for the version."""
    con = duckdb.connect(str(world["db"]))
    con.execute(RAW_SCHEMA.read_text())
    con.execute("CREATE SCHEMA IF NOT EXISTS features")
    first = con.execute("SELECT msno, churn_probability FROM scoring.churn_scores").df()
    rng = np.random.default_rng(5)
    expire = dt.date(2017, 3, 31)
    late = pd.DataFrame({"msno": [f"late{i}" for i in range(LATE)], "churn_probability": rng.beta(2, 8, LATE)})
    members = pd.concat([first, late], ignore_index=True)
    labels = pd.DataFrame({"msno": members["msno"], "target_month": MARCH, "last_expire": expire,
                           "renewal_gap_days": None,
                           "is_churn": (rng.random(len(members)) < members["churn_probability"]).astype(int)})
    con.execute("CREATE TABLE features.labels AS SELECT * FROM labels")
    last_week = dt.date(2017, 3, 27)
    last = pd.DataFrame({"week_start": last_week, "msno": labels["msno"], "membership_expire_date": expire,
                         "churn_probability": 0.05 + 0.9 * labels["is_churn"], "model_version": world["version"]})
    con.execute("INSERT INTO scoring.churn_scores BY NAME SELECT * FROM last")
    # a final labelled month with features and 3 months of history: trainable through March
    con.execute("CREATE TABLE features.member_features AS SELECT msno, DATE '2017-03-01' AS as_of FROM labels")
    con.execute("INSERT INTO raw.transactions VALUES ('m0', 41, 30, 99, 99, 1, DATE '2016-12-02', "
                "DATE '2017-01-02', 0, DATE '2016-12-01')")
    if next_month_ingested:  # April is in, and its data reaches the last day a March renewal counts
        con.execute("INSERT INTO raw.transactions VALUES ('m0', 41, 30, 99, 99, 1, DATE '2017-04-30', "
                    "DATE '2017-05-30', 0, DATE '2017-04-01')")
    con.close()
    client = client_of(world)
    run_id = client.get_model_version("churn_model", world["version"]).run_id
    valid_p = np.random.default_rng(6).beta(2, 8, 3000)
    valid = pd.DataFrame({"msno": "v", "churn_probability": valid_p,
                          "is_churn": (np.random.default_rng(7).random(3000) < valid_p).astype(int)})
    path = world["tmp"] / "validation" / "validation_scores.parquet"
    path.parent.mkdir(exist_ok=True)
    valid.to_parquet(path)
    client.log_artifact(run_id, str(path), "reference")  # replaces the fixture's one-class scores
    client.set_model_version_tag("churn_model", world["version"], "trained_through", "2017-01-01")
    return labels, valid


def test_model_performance_waits_for_final_labels(world):
    _labels_and_transactions(world, next_month_ingested=False)
    result = materialize(model_performance, world, MARCH.isoformat())
    assert result.success
    assert result.asset_materializations_for_node(model_performance.op.name) == []
    con = duckdb.connect(str(world["db"]), read_only=True)
    assert not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'monitoring'").fetchone()[0]
    con.close()


def test_model_performance_judges_the_first_score_and_reports_bands(world):
    from churn_assets.monitoring.performance import relative_log_loss

    labels, valid = _labels_and_transactions(world, next_month_ingested=True)
    result = materialize(model_performance, world, MARCH.isoformat(), {"n_bootstrap": 300})
    meta = result.asset_materializations_for_node(model_performance.op.name)[0].metadata
    con = duckdb.connect(str(world["db"]), read_only=True)
    perf = con.execute("SELECT * FROM monitoring.model_performance").df().set_index("lead_band")
    con.close()
    assert list(perf.index) == ["first_score", "21-30", "0-6"]  # no score 7-20 days ahead
    assert (perf["model_version"] == world["version"]).all()
    head = perf.loc["first_score"]
    assert head["n_scored"] == 1500 and perf.loc["0-6", "n_scored"] == 1500 + LATE
    assert meta["late_first_scores"].value == LATE and meta["n_scored"].value == 1500
    # labels drawn from the first scores: AUC ~0.7, its whole interval below 0.80 - 0.02 -> retrain;
    # the last score sees the decision and would have flattered the model
    assert head["auc_ci_low"] <= head["auc"] <= head["auc_ci_high"] < 0.78
    assert perf.loc["0-6", "auc"] > 0.99
    assert head["decision"] == "retrain" == meta["decision"].value and perf.loc["0-6", "decision"] is None
    assert head["valid_auc"] == 0.80 == meta["valid_auc"].value and meta["valid_log_loss"].value == 0.40
    # both sides calibrated: skill agrees with validation, only discrimination fell
    expected_valid = relative_log_loss(valid["is_churn"], valid["churn_probability"])
    assert meta["valid_relative_log_loss"].value == pytest.approx(expected_valid)
    assert abs(head["relative_log_loss"] - expected_valid) < 0.05
    assert meta["relative_log_loss"].value == pytest.approx(head["relative_log_loss"])
    assert meta["auc_ci_high"].value == pytest.approx(head["auc_ci_high"])
    assert "0-6" in meta["lead_bands"].value and meta["model_version"].value == world["version"]
    assert meta["model_trained_through"].value == "2017-01-01"
    assert meta["trainable_through"].value == "2017-03-01"
    assert meta["production_trained_through"].value == ""  # no @production alias yet

    # re-run: the month's rows are replaced, the interval is the same (fixed seed)
    again = materialize(model_performance, world, MARCH.isoformat(), {"n_bootstrap": 300})
    con = duckdb.connect(str(world["db"]), read_only=True)
    rows = con.execute("SELECT lead_band, auc_ci_high FROM monitoring.model_performance ORDER BY 1").fetchall()
    con.close()
    assert len(rows) == 3 and dict(rows)["first_score"] == head["auc_ci_high"]
    assert again.success
    # the registry resource answers for @production too
    client_of(world).set_registered_model_alias("churn_model", "production", world["version"])
    promoted = materialize(model_performance, world, MARCH.isoformat(), {"n_bootstrap": 50})
    meta = promoted.asset_materializations_for_node(model_performance.op.name)[0].metadata
    assert meta["production_trained_through"].value == "2017-01-01"


class ValidationOnlyRegistry(ModelRegistry):
    """Answers from fixed numbers instead of MLflow; the full training evidence (reference
    sample and all) must not be needed to judge a month."""

    def validation_metrics(self, version: str) -> dict[str, float]:
        return {"auc": 0.99, "log_loss": 0.10}

    def validation_scores(self, version: str) -> pd.DataFrame:
        p = np.random.default_rng(8).beta(2, 8, 500)
        return pd.DataFrame({"msno": "v", "churn_probability": p, "is_churn": (p > 0.3).astype(int)})

    def trained_through(self, version: str | None) -> dt.date | None:
        return dt.date(2017, 2, 1)

    def production_trained_through(self) -> dt.date | None:
        return dt.date(2017, 2, 1)

    def training_evidence(self, version: str):
        raise AssertionError("model_performance downloaded the whole training evidence")


def test_model_performance_called_directly_with_a_stub_registry(world):
    _labels_and_transactions(world, next_month_ingested=True)
    context = dg.build_asset_context(partition_key=MARCH.isoformat(),
                                     resources=resources(world, ValidationOnlyRegistry(tracking_uri="unused")))
    [result] = list(model_performance(context, PerformanceConfig(n_bootstrap=50)))
    meta = result.metadata
    # a validation AUC of 0.99 is far above the realised ~0.7: retrain, judged on the stub's numbers
    assert meta["decision"].value == "retrain" and meta["valid_auc"].value == 0.99
    assert meta["model_trained_through"].value == "2017-02-01" == meta["production_trained_through"].value
    con = duckdb.connect(str(world["db"]), read_only=True)
    headline = "SELECT count(*) FROM monitoring.model_performance WHERE lead_band = 'first_score'"
    assert con.execute(headline).fetchone() == (1,)
    con.close()


def test_drift_report_without_scores_fails_before_any_registry_call(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA scoring; CREATE TABLE scoring.scoring_features (week_start DATE, msno VARCHAR)")
    nowhere = {"db": db, "tmp": tmp_path, "uri": f"sqlite:///{tmp_path / 'never_opened.db'}"}
    context = dg.build_asset_context(partition_key=WEEK.isoformat(), resources=resources(nowhere))
    with pytest.raises(dg.Failure, match="scoring.churn_scores does not exist"):
        drift_report(context, DriftConfig())
    assert not (tmp_path / "never_opened.db").exists()
