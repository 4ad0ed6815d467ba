"""Score the weekly population: probability, bucket, action, reasons, discount.

Pure (no Dagster): the asset and the benchmark call `score_members`. SHAP
contributions cost ~0.3 ms per row, so reasons are computed only for the
buckets that get a personal action (A and B by default), never for all rows.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.core.buckets import A_THRESHOLD, B_THRESHOLD, actions_for, validate_thresholds
from churn_assets.scoring.offers import (
    DEFAULT_HORIZON_MONTHS,
    DEFAULT_LADDER,
    DEFAULT_UPLIFT_BY_BUCKET,
    monthly_price,
    offer_discounts,
)
from churn_assets.core.reasons import REASON_COLUMNS, top_reasons
from churn_assets.marketing.offer_model import OfferModel
from churn_assets.marketing.uplift import DEFAULT_CALL_UPLIFT, capacity_buckets, explore_offers

SCORE_COLUMNS: list[str] = [
    "week_start", "msno", "membership_expire_date", "days_to_expiry", "churn_probability", "bucket",
    "action", "discount_pct", *REASON_COLUMNS, "model_version", "scored_at",
]


class ChurnModel(Protocol):
    """What scoring needs from the registered model (churn_assets.model.pyfunc.ChurnModel)."""

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray: ...

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class ScoringPolicy:
    a_threshold: float = A_THRESHOLD
    b_threshold: float = B_THRESHOLD
    ladder: Sequence[int] = DEFAULT_LADDER
    uplift_by_bucket: Mapping[str, Mapping[int, float]] = field(default_factory=lambda: dict(DEFAULT_UPLIFT_BY_BUCKET))
    horizon_months: float = DEFAULT_HORIZON_MONTHS
    reason_buckets: tuple[str, ...] = ("A", "B")
    # the learned policy (marketing.uplift): calls per week for new contacts (None: the
    # thresholds), the call's uplift that ranks them, and the share of B offered a random rung
    call_capacity: int | None = None
    call_uplift: float = DEFAULT_CALL_UPLIFT
    exploration_share: float = 0.0
    offer_model: OfferModel | None = None  # bucket B's discount per member (replaces its uplift table)

    def __post_init__(self) -> None:
        validate_thresholds(self.a_threshold, self.b_threshold)


def churn_probability(model: ChurnModel, features: pd.DataFrame) -> np.ndarray:
    """P(churn) per row; accepts a 1-D output or sklearn's (n, 2) layout."""
    p = np.asarray(model.predict_proba(features), dtype=float)
    if p.ndim == 2:
        p = p[:, -1]
    if p.shape != (len(features),):
        raise ValueError(f"model returned {p.shape} probabilities for {len(features)} rows")
    return p


def score_members(
    features: pd.DataFrame,
    model: ChurnModel,
    model_version: str,
    week_start: dt.date,
    policy: ScoringPolicy = ScoringPolicy(),
    scored_at: dt.datetime | None = None,
    new_contact: np.ndarray | None = None,
) -> pd.DataFrame:
    """scoring.churn_scores rows (SCORE_COLUMNS, in that order) for a frame holding
    msno, membership_expire_date and FEATURE_COLUMNS. `new_contact` marks the members not
    contacted earlier in their cycle (default: all), the ones a call capacity counts."""
    scored_at = scored_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    x = features[FEATURE_COLUMNS].reset_index(drop=True)
    p = churn_probability(model, x) if len(x) else np.zeros(0)
    price = monthly_price(x["last_list_price"], x["last_plan_days"])
    new = np.ones(len(x), dtype=bool) if new_contact is None else np.asarray(new_contact, dtype=bool)
    buckets = capacity_buckets(p, price * policy.horizon_months, new, policy.call_capacity, policy.call_uplift,
                               policy.a_threshold, policy.b_threshold)
    expire = pd.to_datetime(features["membership_expire_date"]).reset_index(drop=True)
    discount = offer_discounts(buckets, p, price, policy.uplift_by_bucket, policy.ladder, policy.horizon_months)
    if policy.offer_model is not None:
        paying_b = (buckets == "B") & (price > 0)
        discount[paying_b] = policy.offer_model.choose(p[paying_b], x["active_days_30d"].to_numpy()[paying_b],
                                                       price[paying_b], policy.ladder, policy.horizon_months)
    discount, _ = explore_offers(features["msno"].astype(str), expire, buckets, discount, price > 0, policy.ladder,
                                 policy.exploration_share)
    out = pd.DataFrame({
        "week_start": pd.Series([week_start] * len(x), dtype=object),
        "msno": features["msno"].astype(str).to_numpy(),
        "membership_expire_date": expire.dt.date,
        "days_to_expiry": (expire - pd.Timestamp(week_start)).dt.days.astype("int32"),
        "churn_probability": p,
        "bucket": buckets,
        "action": actions_for(buckets),
        "discount_pct": discount.astype("int32"),
    })
    reasons = pd.DataFrame(None, index=out.index, columns=REASON_COLUMNS, dtype=object)
    explain = np.isin(buckets, list(policy.reason_buckets))
    if explain.any():
        rows = x[explain]
        contrib = model.contributions(rows)
        contrib.index = rows.index
        reasons.loc[explain, REASON_COLUMNS] = top_reasons(contrib, rows, k=len(REASON_COLUMNS)).to_numpy()
    out[REASON_COLUMNS] = reasons
    out["model_version"] = str(model_version)
    out["scored_at"] = pd.Timestamp(scored_at)
    return out[SCORE_COLUMNS]
