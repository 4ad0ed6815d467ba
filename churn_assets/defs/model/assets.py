"""Model domain assets: train and register (ml/churn_model), then accept it against
production (ml/production_model -> alias production). The blocking check between them
(-> alias staging) is in checks.py, train_job and retune_job in jobs.py.

Assets stay thin: read the feature store, call the pure training code, hand MLflow work to the
`registry` resource, report metadata. The version produced by ml/churn_model travels to the
check and ml/production_model through its materialisation metadata ("model_version"), so each
can also be re-run on its own.
"""
import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from churn_assets.core.links import dagster_run_url
from churn_assets.defs.keys import CHURN_MODEL, LABELS, MEMBER_FEATURES, PRODUCTION_MODEL
from churn_assets.defs.model.config import AcceptanceConfig, TrainConfig
from churn_assets.defs.model.metadata import acceptance_metadata, training_metadata
from churn_assets.defs.resources import ModelRegistry, Warehouse
from churn_assets.model.data import labelled_months, load_training_frame, training_window
from churn_assets.model.names import PRODUCTION
from churn_assets.model.promotion_log import promotion_row, record_promotion


def latest_model_version(instance: dg.DagsterInstance) -> str:
    """The version the newest ml/churn_model materialisation registered."""
    event = instance.get_latest_materialization_event(CHURN_MODEL)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "model_version" not in meta:
        raise dg.Failure(description="ml/churn_model has no materialisation with a model_version yet: run train_job first.")
    return str(meta["model_version"].value)


def _tune(context: dg.AssetExecutionContext, config: TrainConfig, mlflow: Any, frame: pd.DataFrame,
          train_months: list[dt.date], valid_month: dt.date) -> dict:
    """Optuna's best recipe; the study is logged into this run's MLflow run."""
    from churn_assets.model.tuning import tune

    params, trials = tune(frame, train_months, valid_month, config.n_trials, config.timeout_s, config.seed,
                          config.num_threads)
    mlflow.log_params({f"tuning.best.{k}": v for k, v in params.items()})
    mlflow.log_metric("tuning_best_early_stop_log_loss", float(trials["value"].min()))
    mlflow.log_text(trials.to_csv(index=False), "tuning/trials.csv")
    context.log.info(f"Optuna: {len(trials)} trials, best early-stop log loss {trials['value'].min():.4f}")
    return params


@dg.asset(
    key=CHURN_MODEL,
    group_name="model",
    kinds={"lightgbm", "mlflow"},
    deps=[MEMBER_FEATURES, LABELS],
    description="LightGBM churn model trained on the last K final labelled months, validated on the newest, "
    "logged to MLflow and registered as a new version of churn_model.",
)
def churn_model(
    context: dg.AssetExecutionContext, config: TrainConfig, warehouse: Warehouse, registry: ModelRegistry,
    mlflow: dg.ResourceParam[Any],  # dagster-mlflow: this Dagster run's MLflow run, which the training logs into
) -> dg.MaterializeResult:
    from churn_assets.model.training import DEFAULT_PARAMS, train_churn_model  # LightGBM, sklearn: only when run

    with warehouse.get_connection() as con:
        try:
            train_months, valid_month = training_window(labelled_months(con, config.min_history_months),
                                                        config.train_months)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from None
        frame = load_training_frame(con, [*train_months, valid_month])
    if config.mode == "retune":
        params = _tune(context, config, mlflow, frame, train_months, valid_month)
    else:
        params = registry.production_params() or DEFAULT_PARAMS
    result = train_churn_model(frame, params, train_months, valid_month, seed=config.seed, num_threads=config.num_threads)
    logged = registry.log_training(result, tags={"dagster_run_id": context.run_id, "mode": config.mode,
                                                 "dagster_run_url": dagster_run_url(context.run_id),  # MLflow -> Dagster
                                                 **config.gate_tags()})
    return dg.MaterializeResult(
        metadata=training_metadata(result, logged, config.mode, len(frame), registry.run_url(logged.run_id))
    )


@dg.asset(
    key=PRODUCTION_MODEL,
    group_name="model",
    kinds={"mlflow"},
    deps=[CHURN_MODEL],
    pool="duckdb_warehouse",
    description="Acceptance: a paired bootstrap non-inferiority test of the new version against production "
    "on its validation month, which must be the newest final labelled month; refuses stale windows and "
    "versions identical to production. Moves alias production or refuses, and records the decision in "
    "ml.model_promotions.",
)
def production_model(
    context: dg.AssetExecutionContext, config: AcceptanceConfig, warehouse: Warehouse, registry: ModelRegistry
) -> dg.MaterializeResult:
    version = latest_model_version(context.instance)
    with warehouse.get_connection() as con:
        months = labelled_months(con)
        if not months:
            raise dg.Failure(description="no final labelled month to run acceptance on")
        newest = months[-1]
        # the challenger's hold-out rows with their population weights (README: the model under treatment)
        frame = load_training_frame(con, [newest])
    # the bootstrap runs without the warehouse lock
    decision = registry.acceptance(version, frame, newest, **config.settings())
    with warehouse.get_connection() as con:
        record_promotion(con, promotion_row(version, PRODUCTION, decision))
    return dg.MaterializeResult(metadata=acceptance_metadata(
        decision, version, newest, registry.production_version(), registry.version_tags(version)
    ))


model_assets = [churn_model, production_model]
