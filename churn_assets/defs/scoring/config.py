"""Launchpad config of the weekly scores: bucket thresholds and the discount policy.
(No `from __future__ import annotations`: Dagster reads the Config annotations at definition time.)"""
import dagster as dg
from pydantic import Field

from churn_assets.core.buckets import A_THRESHOLD, B_THRESHOLD
from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, DEFAULT_LADDER, DEFAULT_UPLIFT_BY_BUCKET
from churn_assets.scoring.scores import ScoringPolicy


class ScoringConfig(dg.Config):
    a_threshold: float = Field(default=A_THRESHOLD, description="Bucket A (call) from this churn probability.")
    b_threshold: float = Field(default=B_THRESHOLD, description="Bucket B (discount) from this probability; below it C.")
    discount_ladder: list[int] = Field(default=list(DEFAULT_LADDER), description="Discounts on offer, in %.")
    uplift: dict[str, dict[str, float]] = Field(
        default={b: {str(d): u for d, u in t.items()} for b, t in DEFAULT_UPLIFT_BY_BUCKET.items()},
        description="Per bucket: discount % -> share of would-be churners the discount keeps. "
        "Buckets without a table get no offer.",
    )
    horizon_months: float = Field(default=DEFAULT_HORIZON_MONTHS, description="Months of revenue a retained member is worth.")

    def policy(self) -> ScoringPolicy:
        return ScoringPolicy(
            a_threshold=self.a_threshold,
            b_threshold=self.b_threshold,
            ladder=tuple(self.discount_ladder),
            uplift_by_bucket={b: {int(d): u for d, u in t.items()} for b, t in self.uplift.items()},
            horizon_months=self.horizon_months,
        )
