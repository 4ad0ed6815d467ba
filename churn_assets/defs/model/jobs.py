"""train_job and retune_job: train, gate (blocking check) and accept, in one Dagster run that
is one MLflow run (the dagster-mlflow hook ends it after the last node, or marks it FAILED)."""
import dagster as dg

from churn_assets.defs.keys import CHURN_MODEL, PRODUCTION_MODEL
from churn_assets.defs.model.config import TrainConfig
from churn_assets.defs.model.tracking import end_mlflow_on_run_finished

_SELECTION = dg.AssetSelection.assets(CHURN_MODEL, PRODUCTION_MODEL)
train_job = dg.define_asset_job(
    "train_job",
    selection=_SELECTION,
    hooks={end_mlflow_on_run_finished},
    config=dg.RunConfig(ops={"ml__churn_model": TrainConfig(mode="refit")}),
    description="Refit the production recipe on the newest months, gate it, promote or refuse.",
)
retune_job = dg.define_asset_job(
    "retune_job",
    selection=_SELECTION,
    hooks={end_mlflow_on_run_finished},
    config=dg.RunConfig(ops={"ml__churn_model": TrainConfig(mode="retune", n_trials=20, timeout_s=900.0)}),
    description="Optuna search over the LightGBM recipe, then train, gate and promote like train_job.",
)
model_jobs = [train_job, retune_job]
