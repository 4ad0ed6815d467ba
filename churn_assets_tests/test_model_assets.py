"""Model domain through Dagster: train_job / retune_job executed in process (not
dg.materialize: the dagster-mlflow hook that ends the MLflow run needs the job), against a
real DuckDB file and a real MLflow sqlite store under tmp_path.

In order (module-scoped world, Jan-May final): the first model; a retune on the same months;
an identical retrain (refused); June's labels arrive and the retrain on it is promoted; a
challenger trained on shuffled labels is blocked by the automated check."""
from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from churn_assets.defs.keys import CHURN_MODEL
from churn_assets.defs.model import assets as A
from churn_assets.defs.model.checks import model_checks
from churn_assets.defs.model.config import AcceptanceConfig, TrainConfig
from churn_assets.defs.model.jobs import model_jobs
from churn_assets.defs.resources import Warehouse, local_resources
from churn_assets.model.versions import alias_version, load_production
from churn_assets.settings import paths_from_env
from churn_assets_tests.stubs import StubRegistry
from churn_assets_tests.test_model_support import fresh_mlflow_store
from churn_assets_tests.toy_world import write_toy_world

pytestmark = pytest.mark.slow  # train/retune jobs on a real MLflow store: see `make test-fast`

MONTHS = [dt.date(2017, m, 1) for m in range(1, 6)]
JUNE = dt.date(2017, 6, 1)
# 2,000-row months cannot confirm the default margins (sized for ~15k rows, see test_model_registry)
SMALL_MONTH = {"auc_margin": 0.02, "log_loss_margin": 0.01}


def _config(**train) -> dict:
    return {"ops": {"ml__churn_model": {"config": train},
                    "ml__production_model": {"config": SMALL_MONTH}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_assets")
    uri, _ = fresh_mlflow_store(root / "mlflow")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHURN_DATA_DIR", str(root))
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    paths = paths_from_env()
    db = str(root / "churn.duckdb")
    with duckdb.connect(db) as con:
        write_toy_world(con, MONTHS, 2000, seed=11)
    defs = dg.Definitions(  # the environment's resources ("registry", "mlflow", ...), this test's warehouse
        assets=A.model_assets,
        asset_checks=model_checks,
        jobs=model_jobs,
        resources={**local_resources(paths), "warehouse": Warehouse(database=db)},
    )
    with dg.instance_for_test() as instance:
        yield {"defs": defs, "instance": instance, "db": db, "uri": uri, "client": MlflowClient(uri), "paths": paths}
    mp.undo()


def _materializations(result) -> dict:
    return {
        "/".join(e.asset_key.path): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def _promotions(db: str) -> list[tuple]:
    with duckdb.connect(db) as con:
        return con.execute("SELECT model_version, stage, decision FROM ml.model_promotions ORDER BY decided_at").fetchall()


def test_jobs_wire_the_hook_and_end_with_production_model(env):
    job = env["defs"].resolve_job_def("train_job")
    assert [n.name for n in job.nodes_in_topological_order][-1] == "ml__production_model"
    assert {h.name for h in job.hook_defs} == {"end_mlflow_on_run_finished"}
    retune = env["defs"].resolve_job_def("retune_job")
    assert retune.run_config["ops"]["ml__churn_model"]["config"]["mode"] == "retune"
    spec = env["defs"].resolve_assets_def(CHURN_MODEL).specs_by_key[CHURN_MODEL]
    assert spec.kinds == {"lightgbm", "mlflow"} and spec.group_name == "model"


def test_train_job_registers_and_promotes_first_model(env):
    result = env["defs"].resolve_job_def("train_job").execute_in_process(instance=env["instance"], run_config=_config())
    assert result.success
    meta = _materializations(result)
    trained, prod = meta["ml/churn_model"], meta["ml/production_model"]
    assert trained["model_version"] == "1" and trained["valid_month"] == "2017-05-01"
    assert trained["train_months"] == "2017-02-01,2017-03-01,2017-04-01"
    assert trained["trained_through"] == "2017-05-01" and len(trained["training_fingerprint"]) == 20
    assert trained["best_iteration"] > trained["holdout_iteration"] > 0 and trained["num_threads"] >= 1
    assert isinstance(trained["valid_auc"], float) and trained["valid_auc"] > trained["baseline_auc"]
    assert prod == {**prod, "production_version": "1", "challenger_version": "1", "decision": "promoted",
                    "reason": "first production model", "challenger_trained_through": "2017-05-01",
                    "acceptance_month": "2017-05-01", "mode": "refit"}
    assert np.isnan(prod["delta_auc_low"]) and np.isnan(prod["delta_log_loss_high"])  # nothing to compare with
    [check] = result.get_asset_check_evaluations()
    assert check.passed

    client = env["client"]
    assert alias_version(client, "staging") == alias_version(client, "production") == "1"
    run = client.get_run(trained["mlflow_run_id"])
    assert run.info.status == "FINISHED"  # the hook ended it after the last node
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["dagster_run_url"] == f"http://127.0.0.1:3000/runs/{result.run_id}"  # MLflow -> Dagster
    assert _promotions(env["db"]) == [("1", "staging", "promoted"), ("1", "production", "promoted")]

    model, version = load_production(env["uri"])
    with duckdb.connect(env["db"]) as con:
        rows = con.execute("SELECT * FROM features.member_features WHERE as_of = DATE '2017-05-01' LIMIT 300").df()
    p = model.predict_proba(rows)
    assert version == "1" and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


def test_retune_job_runs_a_small_study(env):
    result = env["defs"].resolve_job_def("retune_job").execute_in_process(
        instance=env["instance"], run_config=_config(mode="retune", n_trials=2, timeout_s=120.0)
    )
    assert result.success
    trained = _materializations(result)["ml/churn_model"]
    assert trained["mode"] == "retune" and trained["model_version"] == "2"
    run = env["client"].get_run(trained["mlflow_run_id"])
    assert "tuning.best.num_leaves" in run.data.params and "tuning_best_early_stop_log_loss" in run.data.metrics
    assert [a.path for a in env["client"].list_artifacts(run.info.run_id, "tuning")] == ["tuning/trials.csv"]
    prod = _materializations(result)["ml/production_model"]
    # promoted or refused, production is whichever the acceptance gate says
    assert prod["production_version"] == ("2" if prod["decision"] == "promoted" else "1")
    assert alias_version(env["client"], "production") == prod["production_version"]
    assert prod["mode"] == "retune" and prod["acceptance_month"] == "2017-05-01"
    if prod["decision"] == "refused":  # Optuna kept the recipe (identical) or the bootstrap said no
        assert prod["reason"].startswith(("identical to production v1", "inferior to production v1"))
    else:  # both validated on May: production's own logged hold-out predictions are the comparison
        assert "v1's own hold-out predictions of 2017-05-01" in prod["reason"]


def test_identical_retrain_is_refused(env):
    production_before = alias_version(env["client"], "production")
    result = env["defs"].resolve_job_def("train_job").execute_in_process(
        instance=env["instance"], run_config=_config(num_threads=1)
    )
    assert result.success  # a refusal is a decision, not a failure
    meta = _materializations(result)
    prod = meta["ml/production_model"]
    assert prod["decision"] == "refused" and prod["production_version"] == production_before
    assert prod["reason"].startswith(f"identical to production v{production_before}: same training data and parameters")
    assert meta["ml/churn_model"]["training_fingerprint"] in prod["reason"]
    assert alias_version(env["client"], "production") == production_before
    assert _promotions(env["db"])[-1] == (meta["ml/churn_model"]["model_version"], "production", "refused")


def test_newer_final_month_retrain_is_promoted(env):
    production_before = alias_version(env["client"], "production")
    with duckdb.connect(env["db"]) as con:  # June's labels become final
        write_toy_world(con, [JUNE], 2000, seed=11)
    result = env["defs"].resolve_job_def("train_job").execute_in_process(instance=env["instance"], run_config=_config())
    assert result.success
    meta = _materializations(result)
    trained, prod = meta["ml/churn_model"], meta["ml/production_model"]
    assert trained["valid_month"] == trained["trained_through"] == "2017-06-01"
    assert prod["decision"] == "promoted", prod["reason"]
    assert prod["production_version"] == prod["challenger_version"] == trained["model_version"]
    assert prod["acceptance_month"] == "2017-06-01" and prod["challenger_trained_through"] == "2017-06-01"
    # production learned through May: it was scored on June, out of sample like the challenger's hold-out
    assert prod["reason"].startswith(f"non-inferior to production v{production_before} on 2017-06-01 "
                                     f"(production v{production_before} (trained through 2017-05-01) scored on 2017-06-01)")
    assert prod["delta_auc_low"] > -SMALL_MONTH["auc_margin"] and prod["delta_log_loss_high"] < SMALL_MONTH["log_loss_margin"]
    assert f"{prod['delta_auc_low']:+.4f}" in prod["reason"]
    assert alias_version(env["client"], "production") == trained["model_version"]


def test_worse_challenger_is_blocked_and_production_stays(env):
    production_before = alias_version(env["client"], "production")
    with duckdb.connect(env["db"]) as con:  # shuffle the training months' labels
        con.execute("""
            UPDATE features.labels SET is_churn = s.is_churn
            FROM (SELECT msno, target_month,
                         first_value(is_churn) OVER (PARTITION BY target_month ORDER BY hash(msno, 42)
                                                     ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS is_churn
                  FROM features.labels WHERE target_month < DATE '2017-06-01') s
            WHERE features.labels.msno = s.msno AND features.labels.target_month = s.target_month
        """)
    result = env["defs"].resolve_job_def("train_job").execute_in_process(
        instance=env["instance"], run_config=_config(), raise_on_error=False
    )
    assert not result.success  # the blocking check failed
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and "not above chance" in check.description
    assert "below the base-rate log loss" in check.description
    assert "ml/production_model" not in _materializations(result)
    assert alias_version(env["client"], "production") == production_before
    version = _materializations(result)["ml/churn_model"]["model_version"]
    assert env["client"].get_model_version("churn_model", version).tags["gate.automated"] == "failed"
    assert _promotions(env["db"])[-1] == (version, "staging", "refused")
    run = env["client"].get_run(_materializations(result)["ml/churn_model"]["mlflow_run_id"])
    assert run.info.status == "FAILED"  # the check's failure ended the MLflow run too


def test_too_few_months_fails_clearly(env):
    result = env["defs"].resolve_job_def("train_job").execute_in_process(
        instance=env["instance"], run_config=_config(train_months=6), raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("ml__churn_model")
    assert "need 7 final labelled months" in failure.error.message + str(failure.user_failure_data)


def test_assets_called_directly_fail_clearly_without_their_inputs(tmp_path):
    """Direct calls with stub resources: no final labelled month to train or accept on, and no
    ml/churn_model materialisation for the acceptance to read its version from."""
    warehouse = Warehouse(database=str(tmp_path / "empty.duckdb"))
    resources = {"warehouse": warehouse, "registry": StubRegistry(), "mlflow": object()}
    with dg.build_asset_context(resources=resources) as context:
        with pytest.raises(dg.Failure, match="need 4 final labelled months .* found 0"):
            A.churn_model(context, config=TrainConfig())
    with dg.instance_for_test() as instance, \
            dg.build_asset_context(resources={"warehouse": warehouse, "registry": StubRegistry()},
                                   instance=instance) as context:
        with pytest.raises(dg.Failure, match="no materialisation with a model_version yet"):
            A.production_model(context, config=AcceptanceConfig())
