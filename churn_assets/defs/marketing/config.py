"""Launchpad config of the retention experiment's assignment and effect measurement.
(No `from __future__ import annotations`: Dagster reads the Config annotations at definition time.)"""
import dagster as dg
from pydantic import Field

from churn_assets.marketing.effect import DEFAULT_CONFIDENCE, DEFAULT_CRITERION_MONTHS, DEFAULT_MIN_RELATIVE_REDUCTION
from churn_assets.marketing.treatments import DEFAULT_CONTROL_SHARE, DEFAULT_SALT
from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS


class TreatmentsConfig(dg.Config):
    control_share: float = Field(
        default=DEFAULT_CONTROL_SHARE,
        description="Share of each week's new contacts held out as the control group (no action), in [0, 1).",
    )
    salt: str = Field(
        default=DEFAULT_SALT,
        description="Salt of the hold-out hash. Changing it re-draws the control group of new cycles: "
        "keep it for the life of an experiment.",
    )


class RetentionEffectConfig(dg.Config):
    min_relative_reduction: float = Field(
        default=DEFAULT_MIN_RELATIVE_REDUCTION,
        description="The business criterion: the contacted members' churn rate at least this share below "
        "the control's counterfactual, (control - treated) / control.",
    )
    criterion_months: int = Field(
        default=DEFAULT_CRITERION_MONTHS, description="Successive final months the criterion must hold.",
    )
    horizon_months: float = Field(
        default=DEFAULT_HORIZON_MONTHS,
        description="Months a retained member is worth (and a discount lasts) in net_revenue.",
    )
    confidence: float = Field(default=DEFAULT_CONFIDENCE, description="Confidence level of the intervals.")
