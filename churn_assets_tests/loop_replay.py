"""The closed loop replayed time-true by the demo's own code on a test instance, so every
step is a real Dagster run, delivered Monday by Monday (used by test_loop_shift_world and
test_loop_stationary_world, two files so that two test workers replay them side by side)."""
import dagster as dg
import duckdb
from dagster._core.storage.tags import SENSOR_NAME_TAG
from mlflow import MlflowClient

from churn_assets.demo import run_demo
from churn_assets.model.names import MODEL_NAME
from churn_assets.settings import paths_from_env

MEMBERS = 3_000
# ~2.5 k candidates a month: LightGBM and the logistic baseline tie within noise, and the
# bootstrap interval of an AUC difference is ~4x wider than at the demo's 15 k rows, so the
# gate tolerates a tie and wider margins here (the gate itself is tested in test_model_*);
# Optuna gets 3 trials.
_GATE = {"baseline_margin": -0.01}
_ACCEPT = {"ml__production_model": {"config": {"auc_margin": 0.02, "log_loss_margin": 0.01}}}
RUN_CONFIG = {
    "train_job": {"ops": {"ml__churn_model": {"config": {"mode": "refit", **_GATE}}, **_ACCEPT}},
    "retune_job": {"ops": {"ml__churn_model": {"config": {"mode": "retune", "n_trials": 3, "timeout_s": 60.0,
                                                          **_GATE}}, **_ACCEPT}},
    # the HTML of an acting week (~3 s each, 8 of the shift world's weeks) is tested in test_monitoring_assets
    "weekly_scoring_job": {"ops": {"monitoring__drift_report": {"config": {"render_html": "never"}}}},
}


def replay(months, scenarios, until):
    """(demo summary, drift_reports weeks, tags of each promoted version, runs the drift sensor asked
    for) of a replay that stops after the Monday `until`."""
    with dg.instance_for_test() as instance:
        # online traffic has its own tests (test_serving_*): leaving it out saves ~2 min here
        summary = run_demo(members=MEMBERS, seed=5, instance=instance, run_config=RUN_CONFIG, online_traffic=False,
                           until=until, world={"start": "2016-05", "months": months, "scenarios": scenarios})
    with duckdb.connect(str(paths_from_env().duckdb_path), read_only=True) as con:
        weeks = con.execute("SELECT week_start::VARCHAR AS week_start, model_version, drift_share, level, decision "
                            "FROM monitoring.drift_reports ORDER BY 1").df()
        promoted = con.execute("SELECT model_version FROM ml.model_promotions WHERE stage = 'production' "
                               "AND decision = 'promoted' ORDER BY decided_at").df()["model_version"].tolist()
    sensor_runs = [r for r in summary.runs if r["tags"].get(SENSOR_NAME_TAG) == "drift_retrain_sensor"]
    client = MlflowClient(paths_from_env().mlflow_tracking_uri)
    tags = {str(v.version): v.tags for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    return summary, weeks, [tags[str(v)] for v in promoted], sensor_runs
