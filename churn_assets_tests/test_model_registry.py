"""Model domain, MLflow side: logging, registration, the two gates, promotions, loading.
A real MLflow sqlite store and file artifacts under a temporary directory."""
from __future__ import annotations

import datetime as dt
import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from churn_assets.model import registry as R
from churn_assets.model.data import load_training_frame
from churn_assets_tests.toy_world import write_toy_world
from churn_assets.model.training import train_churn_model
from churn_assets_tests.test_model_support import fresh_mlflow_store

MONTHS = [dt.date(2017, m, 1) for m in range(1, 6)]
TRAIN, VALID = MONTHS[1:4], MONTHS[4]
LOOSE = {"auc_floor": 0.70, "log_loss_ceiling": 0.45}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A registry holding v1 (good, promoted to production)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri, artifacts = fresh_mlflow_store(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    con = duckdb.connect(str(root / "churn.duckdb"))
    write_toy_world(con, MONTHS, 2000, seed=3)
    frame = load_training_frame(con, [*TRAIN, VALID])
    good = train_churn_model(frame, None, TRAIN, VALID)
    logged = R.log_training(good, uri, artifacts, tags={"mode": "refit"})
    client = MlflowClient(uri)
    auto = R.automated_tests(client, logged.version, good, **LOOSE)
    with pytest.raises(LookupError, match="no 'production' alias") as no_production:
        R.load_production(uri)
    accept = R.acceptance(client, logged.version, frame[frame["target_month"] == VALID])
    for stage, decision in (("staging", auto), ("production", accept)):
        R.record_promotion(con, R.promotion_row(logged.version, stage, decision))
    yield {"uri": uri, "root": root, "client": client, "con": con, "frame": frame, "good": good,
           "logged": logged, "auto": auto, "accept": accept, "no_production": no_production}
    con.close()
    mp.undo()


def test_first_model_is_logged_registered_and_promoted(store):
    client, logged = store["client"], store["logged"]
    assert logged.version == "1" and store["auto"].passed and store["accept"].passed
    assert store["accept"].reasons == ["first production model"]
    assert R.alias_version(client, "staging") == R.alias_version(client, "production") == "1"
    exp = client.get_experiment_by_name("churn")
    assert exp.artifact_location == (store["root"] / "artifacts").as_uri()

    run = client.get_run(logged.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["valid_month"] == "2017-05-01"
    assert run.data.params["train_months"] == "2017-02-01,2017-03-01,2017-04-01"
    for name in ("valid_auc", "valid_log_loss", "valid_ece", "valid_lift_top_decile", "baseline_auc"):
        assert name in run.data.metrics
    assert run.data.metrics["valid_auc"] == pytest.approx(store["good"].metrics["auc"])
    files = {a.path for d in ("reference", "plots") for a in client.list_artifacts(logged.run_id, d)}
    assert files == {R.REFERENCE_FEATURES, R.VALIDATION_SCORES, "plots/feature_importance.png", "plots/calibration.png"}
    tags = client.get_model_version("churn_model", "1").tags
    assert tags["gate.automated"] == "passed" and tags["gate.acceptance"] == "passed" and tags["mode"] == "refit"
    assert R.production_params(client)["num_leaves"] == store["good"].params["num_leaves"]

    evidence = R.training_evidence(client, "1")
    assert evidence.metrics["auc"] == pytest.approx(store["good"].metrics["auc"])
    assert len(evidence.validation_predictions) == 2000 and len(evidence.reference_sample) == 6000


def test_load_production_gives_probabilities(store):
    model, version = R.load_production(store["uri"])
    rows = store["frame"][store["frame"]["target_month"] == VALID]
    p = model.predict_proba(rows)
    assert version == "1" and p.shape == (len(rows),)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, store["good"].validation_predictions["churn_probability"])


def test_worse_challenger_is_refused_and_production_stays(store):
    client, con, frame = store["client"], store["con"], store["frame"]
    rng = np.random.default_rng(0)
    noisy = frame.copy()
    train = noisy["target_month"].isin(TRAIN)
    noisy.loc[train, "is_churn"] = rng.permutation(noisy.loc[train, "is_churn"].to_numpy())
    bad = train_churn_model(noisy, None, TRAIN, VALID)
    version = R.log_training(bad, store["uri"]).version
    assert version == "2"

    auto = R.automated_tests(client, version, bad, **LOOSE)
    assert not auto.passed and any("below the floor" in r for r in auto.reasons)
    assert client.get_model_version("churn_model", version).tags["gate.automated"] == "failed"
    accept = R.acceptance(client, version, frame[frame["target_month"] == VALID])
    assert not accept.passed and "did not pass the automated tests" in accept.reasons[0]
    # even when (wrongly) tagged as passed, it loses on the same newest month
    client.set_model_version_tag("churn_model", version, "gate.automated", "passed")
    accept = R.acceptance(client, version, frame[frame["target_month"] == VALID])
    assert not accept.passed and any("AUC" in r for r in accept.reasons)
    assert accept.details["incumbent_version"] == "1"
    R.record_promotion(con, R.promotion_row(version, "production", accept))
    assert R.alias_version(client, "production") == "1" and R.alias_version(client, "staging") == "1"

    rows = con.execute("SELECT model_version, stage, decision, incumbent_version FROM ml.model_promotions ORDER BY decided_at").fetchall()
    assert rows[-1] == ("2", "production", "refused", "1")
    assert ("1", "production", "promoted", None) in rows


def test_failed_version_never_gets_production(store):
    client = store["client"]
    client.set_model_version_tag("churn_model", "1", "gate.automated", "failed")  # a racing gate flipped it
    try:
        assert R.promote(client, "1") is False
    finally:
        client.set_model_version_tag("churn_model", "1", "gate.automated", "passed")
    assert R.promote(client, "1") is True and R.alias_version(client, "production") == "1"


def test_record_promotion_validates_rows(store):
    with pytest.raises(ValueError, match="bad promotion row"):
        R.record_promotion(store["con"], {"stage": "Production", "decision": "promoted", "model_version": "1"})
    frame = store["con"].execute("SELECT * FROM ml.model_promotions").df()
    assert list(frame.columns) == list(R.PROMOTION_COLUMNS)
    assert isinstance(frame["decided_at"].iloc[0], pd.Timestamp)


def test_load_production_without_alias_is_clear(store):
    assert "train and promote a model first" in str(store["no_production"].value)
