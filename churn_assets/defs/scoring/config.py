"""Launchpad config of the weekly scores: bucket thresholds and the discount policy.
(No `from __future__ import annotations`: Dagster reads the Config annotations at definition time.)"""
from dataclasses import replace
from typing import Optional

import dagster as dg
from pydantic import Field

from churn_assets.core.buckets import A_THRESHOLD, B_THRESHOLD
from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, DEFAULT_LADDER, DEFAULT_UPLIFT_BY_BUCKET
from churn_assets.marketing.uplift import (DEFAULT_CALL_UPLIFT, DEFAULT_EXPLORATION_SHARE, DEFAULT_OFFER_CONFIDENCE,
                                           UpliftEstimate, learn_uplift)
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
    learn_offer: bool = Field(
        default=True, description="Replace the assumed uplift of bucket B's rungs and of the call by the "
        "experiment's estimates (months final by the week; shrunk towards the assumed values).")
    offer_confidence: float = Field(
        default=DEFAULT_OFFER_CONFIDENCE, description="With learn_offer: a measured rung is offered on this "
        "one-sided lower bound of its learned uplift (0.5: the estimate itself), so bucket B is discounted only "
        "where the experiment says it pays; the per-member offer decides on the same bound.")
    per_member_offer: bool = Field(
        default=False, description="With learn_offer: bucket B's discount per member from a logistic model of "
        "the experiment's outcomes (score, listening, rung) once enough are final (marketing.offer_model). Off "
        "by default: on the demo world it earns about what the rung table earns on its bound (README: the learned offer).")
    call_uplift: float = Field(default=DEFAULT_CALL_UPLIFT, description="Assumed share of would-be churners a call "
                               "keeps, until measured: ranks the calls when call_capacity is set.")
    call_capacity: Optional[int] = Field(
        default=None, description="Calls per week: bucket A is the top K new contacts by expected incremental "
        "value of a call. None: bucket A is everyone from a_threshold.")
    exploration_share: float = Field(default=DEFAULT_EXPLORATION_SHARE, description="Share of bucket B offered a "
                                     "random rung (stable per member and expiry), so every rung stays measured.")

    def policy(self, learned: Optional[UpliftEstimate] = None) -> ScoringPolicy:
        uplift = {b: {int(d): u for d, u in t.items()} for b, t in self.uplift.items()}
        if learned is not None and self.learn_offer:
            uplift = {**uplift, "B": learned.by_bucket("B", "uplift_low")}
        return ScoringPolicy(
            a_threshold=self.a_threshold,
            b_threshold=self.b_threshold,
            ladder=tuple(self.discount_ladder),
            uplift_by_bucket=uplift,
            horizon_months=self.horizon_months,
            call_capacity=self.call_capacity,
            call_uplift=learned.call() if learned is not None and self.learn_offer else self.call_uplift,
            exploration_share=self.exploration_share,
            offer_model=learned.model if learned is not None and self.learn_offer else None,
        )

    def learned(self, evidence, outcomes=None) -> Optional[UpliftEstimate]:
        """The shrunk estimates from the experiment's rung rows, with bucket B's per-member offer
        model from its outcomes once there are enough and per_member_offer is on (None when
        learning is off)."""
        if not self.learn_offer:
            return None
        from churn_assets.marketing.offer_model import fit_offer_model  # statsmodels: only when scoring

        table = learn_uplift(evidence, {int(d): u for d, u in self.uplift.get("B", {}).items()}, self.call_uplift,
                             confidence=self.offer_confidence)
        return replace(table, model=fit_offer_model(outcomes, self.discount_ladder, confidence=self.offer_confidence)
                       if self.per_member_offer else None)
