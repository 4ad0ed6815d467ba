"""Model domain assets: train and register (ml/churn_model), gate it (blocking check ->
alias staging), accept it against production (ml/production_model -> alias production).

Assets stay thin: read the feature store, call training/registry functions, report metadata.
The version produced by ml/churn_model travels to the check and ml/production_model through
its materialisation metadata ("model_version"), so each can also be re-run on its own.
"""

import os
from typing import Any, Literal

import dagster as dg
import mlflow as mlflow_lib
from mlflow.tracking import MlflowClient
from pydantic import Field

from churn_assets.model import gate
from churn_assets.model.data import labelled_months, load_training_frame
from churn_assets.model.registry import (
    EXPERIMENT,
    MODEL_NAME,
    PRODUCTION,
    STAGING,
    acceptance,
    alias_version,
    automated_tests,
    log_training,
    production_params,
    promotion_row,
    record_promotion,
    training_evidence,
)
from churn_assets.model.tracking import end_mlflow_on_run_finished, mlflow_resource
from churn_assets.model.training import DEFAULT_PARAMS, train_churn_model
from churn_assets.model.tuning import tune
from churn_assets.resources import Warehouse
from churn_assets.settings import Paths

CHURN_MODEL = dg.AssetKey(["ml", "churn_model"])
PRODUCTION_MODEL = dg.AssetKey(["ml", "production_model"])
MEMBER_FEATURES = dg.AssetKey(["features", "member_features"])
LABELS = dg.AssetKey(["features", "labels"])
# the automated gate's settings travel as version tags, so the check (a later step) uses the run's own
TAG_AUC_LIFT, TAG_LL_GAIN, TAG_BASELINE_MARGIN = "gate.min_auc_lift", "gate.min_log_loss_gain", "gate.baseline_margin"


class TrainConfig(dg.Config):
    train_months: int = Field(
        default=3, ge=2, description="K: train on the last K final labelled months (the newest of them early-stops and calibrates)."
    )
    min_history_months: int = Field(
        default=3, ge=0, description="Skip target months with fewer months of data before them (the 90-day windows must be full)."
    )
    mode: Literal["refit", "retune"] = Field(
        default="refit", description="refit: production hyper-parameters on fresh data; retune: Optuna search first."
    )
    n_trials: int = Field(default=20, ge=1, description="Optuna trials (retune only).")
    timeout_s: float | None = Field(default=900.0, description="Optuna time budget in seconds (retune only).")
    min_auc_lift: float = Field(
        default=gate.MIN_AUC_LIFT, description="Automated gate: validation AUC must exceed 0.5 (chance) by this."
    )
    min_log_loss_gain: float = Field(
        default=gate.MIN_LOG_LOSS_GAIN, description="Automated gate: validation log loss must be this fraction below "
        "the base-rate log loss (the constant forecast = the validation month's churn rate)."
    )
    baseline_margin: float = Field(
        default=0.0, description="Automated gate: AUC must exceed the logistic baseline's by this (0 = beat it; "
        "a small negative value tolerates a tie on small data)."
    )
    seed: int = 0
    num_threads: int = Field(
        default=1, ge=0, description="LightGBM threads (0 = every core of the machine running the step). "
        "1 by default: at a few hundred thousand rows a second thread gains little and, with ops side by "
        "side on a small machine, OpenMP threads contend. A runtime setting: not part of the recipe the "
        "next refit inherits, nor of the training fingerprint."
    )


class AcceptanceConfig(dg.Config):
    auc_margin: float = Field(
        default=gate.AUC_MARGIN, ge=0, description="Non-inferiority: promote only if the lower confidence bound of "
        "AUC(challenger) - AUC(production) on the acceptance month is above -auc_margin."
    )
    log_loss_margin: float = Field(
        default=gate.LOG_LOSS_MARGIN, ge=0, description="Non-inferiority: ... and the upper bound of "
        "log loss(challenger) - log loss(production) is below +log_loss_margin."
    )
    n_bootstrap: int = Field(default=gate.N_BOOTSTRAP, ge=100, description="Paired bootstrap resamples.")
    confidence: float = Field(default=gate.CONFIDENCE, gt=0, lt=1, description="Two-sided bootstrap interval level.")
    seed: int = Field(default=0, description="Bootstrap seed (the same inputs give the same decision).")


def _client(mlf: Any) -> MlflowClient:
    return MlflowClient(getattr(mlf, "tracking_uri", None) or mlflow_lib.get_tracking_uri())


def _latest_version(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(CHURN_MODEL)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "model_version" not in meta:
        raise dg.Failure(description="ml/churn_model has no materialisation with a model_version yet: run train_job first.")
    return str(meta["model_version"].value)


def _run_link(run_id: str, experiment_id: str) -> dg.MetadataValue:
    ui = os.environ.get("CHURN_MLFLOW_UI_URL", "http://localhost:5000").rstrip("/")
    return dg.MetadataValue.url(f"{ui}/#/experiments/{experiment_id}/runs/{run_id}")


@dg.asset(
    key=CHURN_MODEL,
    group_name="model",
    kinds={"lightgbm", "mlflow"},
    deps=[MEMBER_FEATURES, LABELS],
    description="LightGBM churn model trained on the last K final labelled months, validated on the newest, "
    "logged to MLflow and registered as a new version of churn_model.",
)
def churn_model(
    context: dg.AssetExecutionContext, config: TrainConfig, warehouse: Warehouse, mlflow: dg.ResourceParam[Any]
) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        months = labelled_months(con, config.min_history_months)
        k = config.train_months
        if len(months) < k + 1:
            raise dg.Failure(
                description=f"need {k + 1} final labelled months ({k} to train, 1 to validate), found "
                f"{len(months)}: {[m.isoformat() for m in months]}. Ingest more months or lower train_months."
            )
        train_months, valid_month = months[-k - 1 : -1], months[-1]
        frame = load_training_frame(con, [*train_months, valid_month])

    client = _client(mlflow)
    if config.mode == "retune":  # `mlflow` is the dagster-mlflow resource: logs into this run
        params, trials = tune(frame, train_months, valid_month, config.n_trials, config.timeout_s, config.seed,
                              config.num_threads)
        mlflow.log_params({f"tuning.best.{k}": v for k, v in params.items()})
        mlflow.log_metric("tuning_best_early_stop_log_loss", float(trials["value"].min()))
        mlflow.log_text(trials.to_csv(index=False), "tuning/trials.csv")
        context.log.info(f"Optuna: {len(trials)} trials, best early-stop log loss {trials['value'].min():.4f}")
    else:
        params = production_params(client) or DEFAULT_PARAMS

    result = train_churn_model(frame, params, train_months, valid_month, seed=config.seed, num_threads=config.num_threads)
    logged = log_training(result, tags={
        "dagster_run_id": context.run_id,
        "mode": config.mode,
        TAG_AUC_LIFT: str(config.min_auc_lift),
        TAG_LL_GAIN: str(config.min_log_loss_gain),
        TAG_BASELINE_MARGIN: str(config.baseline_margin),
    })
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return dg.MaterializeResult(metadata={
        **{f"valid_{k}": dg.MetadataValue.float(float(v)) for k, v in result.metrics.items()},
        **{f"baseline_{k}": dg.MetadataValue.float(float(v)) for k, v in result.baseline_metrics.items()},
        "model_version": dg.MetadataValue.text(logged.version),
        "mlflow_run_id": dg.MetadataValue.text(logged.run_id),
        "mlflow_run": _run_link(logged.run_id, experiment.experiment_id),
        "mode": dg.MetadataValue.text(config.mode),
        "train_months": dg.MetadataValue.text(",".join(m.isoformat() for m in train_months)),
        "valid_month": dg.MetadataValue.text(valid_month.isoformat()),
        "trained_through": dg.MetadataValue.text(result.trained_through.isoformat()),
        "training_fingerprint": dg.MetadataValue.text(result.fingerprint),
        "best_iteration": dg.MetadataValue.int(result.best_iteration),
        "holdout_iteration": dg.MetadataValue.int(result.holdout_iteration),
        "num_threads": dg.MetadataValue.int(result.num_threads),
        "n_rows": dg.MetadataValue.int(len(frame)),
    })


@dg.asset_check(
    asset=CHURN_MODEL,
    blocking=True,
    pool="duckdb_warehouse",
    description="Signature, sane probabilities, floors relative to the base rate (log loss below the constant "
    "forecast's, AUC above chance, by margins), beats the logistic baseline. "
    "Pass moves alias staging; every decision lands in ml.model_promotions.",
)
def churn_model_automated_tests(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, mlflow: dg.ResourceParam[Any]
) -> dg.AssetCheckResult:
    client = _client(mlflow)
    version = _latest_version(context.instance)
    tags = client.get_model_version(MODEL_NAME, version).tags
    decision = automated_tests(
        client,
        version,
        training_evidence(client, version),
        min_auc_lift=float(tags.get(TAG_AUC_LIFT, gate.MIN_AUC_LIFT)),
        min_log_loss_gain=float(tags.get(TAG_LL_GAIN, gate.MIN_LOG_LOSS_GAIN)),
        baseline_margin=float(tags.get(TAG_BASELINE_MARGIN, 0.0)),
    )
    with warehouse.get_connection() as con:
        record_promotion(con, promotion_row(version, STAGING, decision))
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(decision.reasons),
        metadata={
            "model_version": dg.MetadataValue.text(version),
            "staging_version": dg.MetadataValue.text(alias_version(client, STAGING) or "none"),
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
        },
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
    context: dg.AssetExecutionContext, config: AcceptanceConfig, warehouse: Warehouse, mlflow: dg.ResourceParam[Any]
) -> dg.MaterializeResult:
    client = _client(mlflow)
    version = _latest_version(context.instance)
    with warehouse.get_connection() as con:
        months = labelled_months(con)
        if not months:
            raise dg.Failure(description="no final labelled month to run acceptance on")
        newest = months[-1]
        frame = load_training_frame(con, [newest])
    # the bootstrap runs without the warehouse lock
    decision = acceptance(client, version, frame, newest, auc_margin=config.auc_margin,
                          log_loss_margin=config.log_loss_margin, n_bootstrap=config.n_bootstrap,
                          seed=config.seed, confidence=config.confidence)
    with warehouse.get_connection() as con:
        record_promotion(con, promotion_row(version, PRODUCTION, decision))
    d = decision.details
    floats = {
        k: dg.MetadataValue.float(float(d[k]))
        for k in ("challenger_auc", "challenger_log_loss", "incumbent_auc", "incumbent_log_loss")
        if d.get(k) is not None
    }
    # the bootstrap bounds are always reported (NaN: no comparison, e.g. the first model or a refusal before it)
    floats |= {k: dg.MetadataValue.float(float("nan") if d.get(k) is None else float(d[k]))
               for k in ("delta_auc_low", "delta_log_loss_high")}
    tags = client.get_model_version(MODEL_NAME, version).tags
    return dg.MaterializeResult(metadata={
        "decision": dg.MetadataValue.text("promoted" if decision.passed else "refused"),
        "reason": dg.MetadataValue.text("; ".join(decision.reasons)),
        "production_version": dg.MetadataValue.text(alias_version(client, PRODUCTION) or "none"),
        "challenger_version": dg.MetadataValue.text(version),
        "incumbent_version": dg.MetadataValue.text(d.get("incumbent_version") or "none"),
        "challenger_trained_through": dg.MetadataValue.text(d.get("challenger_trained_through") or "unknown"),
        "acceptance_month": dg.MetadataValue.text(newest.isoformat()),
        "mode": dg.MetadataValue.text(tags.get("mode", "unknown")),
        **floats,
    })


model_assets = [churn_model, production_model]
model_checks = [churn_model_automated_tests]

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


def model_resources(paths: Paths) -> dict:
    """The model domain's resources beyond the shared warehouse: "mlflow" (dagster-mlflow)."""
    return {"mlflow": mlflow_resource(paths.mlflow_tracking_uri, paths.mlflow_artifact_location)}
