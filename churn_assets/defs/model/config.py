"""Launchpad config of training (TrainConfig, ml/churn_model) and acceptance (AcceptanceConfig,
ml/production_model). (No `from __future__ import annotations`: Dagster reads the Config
annotations at definition time.)"""
from typing import Literal

import dagster as dg
from pydantic import Field

from churn_assets.model import gate

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

    def gate_tags(self) -> dict[str, str]:
        """The automated gate's settings as version tags (read back by gate_settings)."""
        return {TAG_AUC_LIFT: str(self.min_auc_lift), TAG_LL_GAIN: str(self.min_log_loss_gain),
                TAG_BASELINE_MARGIN: str(self.baseline_margin)}


def gate_settings(tags: dict[str, str]) -> dict[str, float]:
    """The automated gate's settings the version was trained with (defaults when untagged)."""
    return {
        "min_auc_lift": float(tags.get(TAG_AUC_LIFT, gate.MIN_AUC_LIFT)),
        "min_log_loss_gain": float(tags.get(TAG_LL_GAIN, gate.MIN_LOG_LOSS_GAIN)),
        "baseline_margin": float(tags.get(TAG_BASELINE_MARGIN, 0.0)),
    }


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

    def settings(self) -> dict:
        """Keyword arguments of the acceptance gate (ModelRegistry.acceptance)."""
        return {"auc_margin": self.auc_margin, "log_loss_margin": self.log_loss_margin,
                "n_bootstrap": self.n_bootstrap, "seed": self.seed, "confidence": self.confidence}
