"""What the model assets and check report in the Dagster UI (floats are plotted over time)."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from churn_assets.model.mlflow_logging import LoggedTraining
    from churn_assets.model.promotion import GateDecision
    from churn_assets.model.training import TrainingResult


def training_metadata(result: TrainingResult, logged: LoggedTraining, mode: str, n_rows: int,
                      run_url: str) -> dict:
    """ml/churn_model: validation and baseline metrics, the registered version, its MLflow run,
    the training window and what the version learned."""
    return {
        **{f"valid_{k}": dg.MetadataValue.float(float(v)) for k, v in result.metrics.items()},
        **{f"baseline_{k}": dg.MetadataValue.float(float(v)) for k, v in result.baseline_metrics.items()},
        "model_version": dg.MetadataValue.text(logged.version),
        "mlflow_run_id": dg.MetadataValue.text(logged.run_id),
        "mlflow_run": dg.MetadataValue.url(run_url),
        "mode": dg.MetadataValue.text(mode),
        "train_months": dg.MetadataValue.text(",".join(m.isoformat() for m in result.train_months)),
        "valid_month": dg.MetadataValue.text(result.valid_month.isoformat()),
        "trained_through": dg.MetadataValue.text(result.trained_through.isoformat()),
        "training_fingerprint": dg.MetadataValue.text(result.fingerprint),
        "best_iteration": dg.MetadataValue.int(result.best_iteration),
        "holdout_iteration": dg.MetadataValue.int(result.holdout_iteration),
        "num_threads": dg.MetadataValue.int(result.num_threads),
        "n_rows": dg.MetadataValue.int(n_rows),
    }


def automated_tests_metadata(version: str, staging_version: str | None, decision: GateDecision) -> dict:
    return {
        "model_version": dg.MetadataValue.text(version),
        "staging_version": dg.MetadataValue.text(staging_version or "none"),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
    }


def acceptance_metadata(decision: GateDecision, version: str, acceptance_month: dt.date,
                        production_version: str | None, tags: dict[str, str]) -> dict:
    """ml/production_model: the decision and why, who is production now, the metrics compared."""
    d = decision.details
    floats = {
        k: dg.MetadataValue.float(float(d[k]))
        for k in ("challenger_auc", "challenger_log_loss", "incumbent_auc", "incumbent_log_loss")
        if d.get(k) is not None
    }
    # the bootstrap bounds are always reported (NaN: no comparison, e.g. the first model or a refusal before it)
    floats |= {k: dg.MetadataValue.float(float("nan") if d.get(k) is None else float(d[k]))
               for k in ("delta_auc_low", "delta_log_loss_high")}
    return {
        "decision": dg.MetadataValue.text("promoted" if decision.passed else "refused"),
        "reason": dg.MetadataValue.text("; ".join(decision.reasons)),
        "production_version": dg.MetadataValue.text(production_version or "none"),
        "challenger_version": dg.MetadataValue.text(version),
        "incumbent_version": dg.MetadataValue.text(d.get("incumbent_version") or "none"),
        "challenger_trained_through": dg.MetadataValue.text(d.get("challenger_trained_through") or "unknown"),
        "acceptance_month": dg.MetadataValue.text(acceptance_month.isoformat()),
        "mode": dg.MetadataValue.text(tags.get("mode", "unknown")),
        **floats,
    }
