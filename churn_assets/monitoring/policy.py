"""What to do about drift: the seed's three levels, and concept drift from realised labels.

Data drift (share of drifted feature columns):
    share < retrain_at            -> 'none'     small deviation, keep the model
    retrain_at <= share < retune_at -> 'retrain' refit the production recipe on fresh data
    share >= retune_at            -> 'retune'   back to experimentation (Optuna search)

Concept drift (realised quality once labels are final) can only ask for a
retrain: the features may look the same while their meaning moved.
"""
from __future__ import annotations

import math
from typing import Literal

Decision = Literal["none", "retrain", "retune"]
DECISIONS: tuple[str, ...] = ("none", "retrain", "retune")


def validate_thresholds(retrain_at: float, retune_at: float) -> None:
    if not (0.0 < retrain_at < retune_at <= 1.0):
        raise ValueError(f"need 0 < retrain_at < retune_at <= 1, got retrain_at={retrain_at}, retune_at={retune_at}")


def decide(drift_share: float, retrain_at: float = 0.05, retune_at: float = 0.10) -> Decision:
    """The action for a week's feature drift share (a fraction in [0, 1])."""
    validate_thresholds(retrain_at, retune_at)
    if not (0.0 <= drift_share <= 1.0):  # also refuses NaN
        raise ValueError(f"drift_share must be in [0, 1], got {drift_share}")
    if drift_share >= retune_at:
        return "retune"
    if drift_share >= retrain_at:
        return "retrain"
    return "none"


def performance_decision(
    realised: dict,
    validation: dict,
    auc_margin: float = 0.05,
    log_loss_margin: float = 0.05,
) -> Literal["none", "retrain"]:
    """'retrain' when the realised AUC fell more than `auc_margin` below the
    model's own validation AUC, or the realised log loss rose more than
    `log_loss_margin` above its validation log loss (both absolute margins).

    `realised` has keys auc, log_loss (as in monitoring.model_performance);
    `validation` has auc, log_loss (MLflow valid_auc, valid_log_loss). A metric
    missing or NaN on either side is not compared (e.g. a one-class month has
    no AUC)."""
    if auc_margin < 0 or log_loss_margin < 0:
        raise ValueError(f"margins must be non-negative, got auc_margin={auc_margin}, log_loss_margin={log_loss_margin}")

    def pair(key: str) -> tuple[float, float] | None:
        a, b = realised.get(key), validation.get(key)
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            return None
        return float(a), float(b)

    auc, log_loss = pair("auc"), pair("log_loss")
    if auc and auc[0] < auc[1] - auc_margin:
        return "retrain"
    if log_loss and log_loss[0] > log_loss[1] + log_loss_margin:
        return "retrain"
    return "none"
