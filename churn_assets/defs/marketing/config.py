"""Launchpad config of the retention experiment's assignment.
(No `from __future__ import annotations`: Dagster reads the Config annotations at definition time.)"""
import dagster as dg
from pydantic import Field

from churn_assets.marketing.treatments import DEFAULT_CONTROL_SHARE, DEFAULT_SALT


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
