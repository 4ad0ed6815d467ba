"""What to do about drift: three levels (none, retrain, retune), and concept drift from realised labels.

Data drift (drift share = the production model's gain share of the drifted columns):
    share < retrain_at            -> 'none'     small deviation, keep the model
    retrain_at <= share < retune_at -> 'retrain' refit the production recipe on fresh data
    share >= retune_at            -> 'retune'   back to experimentation (Optuna search)
That is a week's `level`. Hysteresis holds a level reached the week before (same model
version) while the share stays above (1 - hysteresis) x its threshold, so a share
hovering at a threshold does not flap. The week's `decision` is the lower of this week's
and the previous week's level under the same model version: a level must persist two
consecutive weeks before anything is asked for, and the first week of a new model is
'none' (`drift_policy`).

Concept drift (realised quality once labels are final) can only ask for a
retrain: the features may look the same while their meaning moved.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

Decision = Literal["none", "retrain", "retune"]
DECISIONS: tuple[str, ...] = ("none", "retrain", "retune")


# Defaults for the gain-weighted share, measured on generated worlds (5 k members, sample 5000,
# thresholds calibrated with factor 1.5). The per-column thresholds already carry the noise
# control: stationary worlds (3 seeds, models up to 5 months old) never drifted a column, so
# share 0. A level therefore needs only "columns with >= 1 % of the gain moved beyond anything
# the training window shows": a price rise moves price columns holding 1.2-2 % of the gain (a
# model trained on one price barely uses them; 1.8 % at 5 k, 1.2-1.8 % in the 20 k demo's
# versions). Retune when a quarter of the gain moved: the sign-up channel shift reaches
# 0.25-0.42 from its second week.
DEFAULT_RETRAIN_AT = 0.01
DEFAULT_RETUNE_AT = 0.25
DEFAULT_HYSTERESIS = 0.2


def validate_thresholds(retrain_at: float, retune_at: float, hysteresis: float = 0.0) -> None:
    if not (0.0 < retrain_at < retune_at <= 1.0):
        raise ValueError(f"need 0 < retrain_at < retune_at <= 1, got retrain_at={retrain_at}, retune_at={retune_at}")
    if not (0.0 <= hysteresis < 1.0):  # also refuses NaN
        raise ValueError(f"need 0 <= hysteresis < 1, got {hysteresis}")


def decide(drift_share: float, retrain_at: float = DEFAULT_RETRAIN_AT, retune_at: float = DEFAULT_RETUNE_AT) -> Decision:
    """The raw level of a week's feature drift share (a fraction in [0, 1])."""
    validate_thresholds(retrain_at, retune_at)
    if not (0.0 <= drift_share <= 1.0):  # also refuses NaN
        raise ValueError(f"drift_share must be in [0, 1], got {drift_share}")
    if drift_share >= retune_at:
        return "retune"
    if drift_share >= retrain_at:
        return "retrain"
    return "none"


def _rank(level: str) -> int:
    if level not in DECISIONS:
        raise ValueError(f"level must be one of {DECISIONS}, got {level!r}")
    return DECISIONS.index(level)


def drift_level(
    drift_share: float,
    previous_level: str | None = None,
    retrain_at: float = DEFAULT_RETRAIN_AT,
    retune_at: float = DEFAULT_RETUNE_AT,
    hysteresis: float = DEFAULT_HYSTERESIS,
) -> Decision:
    """This week's level: `decide`, except that a level L the previous week reached (same
    model version; None: no such week) holds while share >= threshold_L x (1 - hysteresis)."""
    validate_thresholds(retrain_at, retune_at, hysteresis)
    level = decide(drift_share, retrain_at, retune_at)
    if previous_level is None:
        return level
    for held, threshold in (("retune", retune_at), ("retrain", retrain_at)):
        if _rank(previous_level) >= _rank(held) and drift_share >= threshold * (1.0 - hysteresis):
            return max(level, held, key=_rank)
    return level


def persisted_decision(level: str, previous_level: str | None) -> Decision:
    """The lower of this week's and the previous week's level (same model version): a level
    acts only once it held two consecutive weeks. No previous week (a new model version,
    or a gap): 'none'."""
    if previous_level is None:
        _rank(level)
        return "none"
    return min(level, previous_level, key=_rank)


def previous_level_for(previous_week: Mapping | None, model_version: str) -> Decision | None:
    """The previous week's level when that week was scored by `model_version`, else None.
    `previous_week` is its monitoring.drift_reports row; rows written before the level
    column existed lend their decision."""
    if not previous_week or str(previous_week.get("model_version")) != str(model_version):
        return None
    for key in ("level", "decision"):
        value = previous_week.get(key)
        if isinstance(value, str) and value in DECISIONS:
            return value
    return None


def drift_policy(
    drift_share: float,
    previous_level: str | None,
    retrain_at: float = DEFAULT_RETRAIN_AT,
    retune_at: float = DEFAULT_RETUNE_AT,
    hysteresis: float = DEFAULT_HYSTERESIS,
) -> tuple[Decision, Decision]:
    """(level, decision) of a week given the previous week's level under the same model."""
    level = drift_level(drift_share, previous_level, retrain_at, retune_at, hysteresis)
    return level, persisted_decision(level, previous_level)


def replay_drift_policy(
    weeks: Iterable[tuple[float, str]],
    retrain_at: float = DEFAULT_RETRAIN_AT,
    retune_at: float = DEFAULT_RETUNE_AT,
    hysteresis: float = DEFAULT_HYSTERESIS,
) -> list[tuple[Decision, Decision]]:
    """(level, decision) for consecutive weeks given as (drift_share, model_version)."""
    out, previous = [], None
    for share, version in weeks:
        prior = previous_level_for(previous, version)
        level, decision = drift_policy(share, prior, retrain_at, retune_at, hysteresis)
        out.append((level, decision))
        previous = {"model_version": version, "level": level}
    return out


def performance_decision(
    realised: dict,
    validation: dict,
    auc_margin: float = 0.02,
    relative_log_loss_margin: float = 0.05,
) -> Literal["none", "retrain"]:
    """'retrain' when the model has lost what it showed on its validation month, measured so that
    a mere change of the base rate does not count:

    - discrimination: the bootstrap upper bound of the realised AUC (auc_ci_high) is below the
      validation AUC - auc_margin (the whole interval sits below it, not just the estimate), or
    - skill: the realised log loss relative to the base-rate log loss (relative_log_loss) is
      above the validation one + relative_log_loss_margin. Raw log loss is not compared: it
      grows with the churn rate at unchanged quality.

    `realised` has auc_ci_high and relative_log_loss (a first_score row of
    monitoring.model_performance); `validation` has auc and relative_log_loss (the version's
    validation month). A value missing or NaN on either side is not compared (e.g. a
    one-class month has no AUC)."""
    if not (auc_margin >= 0 and relative_log_loss_margin >= 0):  # also refuses NaN
        raise ValueError(f"margins must be non-negative, got auc_margin={auc_margin}, "
                         f"relative_log_loss_margin={relative_log_loss_margin}")

    def pair(realised_key: str, validation_key: str) -> tuple[float, float] | None:
        try:  # None, NaN or pandas NA: nothing to compare
            a, b = float(realised.get(realised_key)), float(validation.get(validation_key))
        except (TypeError, ValueError):
            return None
        return None if math.isnan(a) or math.isnan(b) else (a, b)

    auc, skill = pair("auc_ci_high", "auc"), pair("relative_log_loss", "relative_log_loss")
    if auc and auc[0] < auc[1] - auc_margin:
        return "retrain"
    if skill and skill[0] > skill[1] + relative_log_loss_margin:
        return "retrain"
    return "none"
