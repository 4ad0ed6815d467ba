"""The discount to offer each member: the rung of a discount ladder with the
largest expected margin.

Model (per member, over a horizon of H months):

    V          = monthly_price * H            value of keeping the member for H months
    p          = churn probability from the model
    uplift[d]  = share of would-be churners that a d % discount keeps

    gain(d)    = p * uplift[d] * V * (1 - d/100)   churners the offer retains, who then
                                                  pay the discounted price
    cost(d)    = (1 - p) * (d/100) * V            the discount given to members who would
                                                  have stayed anyway
    margin(d)  = gain(d) - cost(d) - margin(0)     expected margin relative to no offer

The chosen discount is the d with the largest margin(d) > 0, else 0 (no
discount pays). Ties go to the smaller discount.

Assumptions, stated so they can be challenged:
- uplift is a flat rate per discount level, the same for every member of a bucket
  (an estimate until an A/B test measures it; configuration), or a share per member
  and level once marketing.offer_model has learned one from the experiment;
- every member offered the discount takes it, churners and stayers alike, and the
  discount applies for the whole horizon;
- a retained churner stays the full horizon; no other costs (contact, cannibalisation);
- V scales gain and cost alike, so the price never changes *which* discount wins,
  only the money at stake; a free plan (V = 0) never gets a discount.
With the default table a 10 % discount pays from p = 0.1 / 0.325 ~ 0.31 (the
bottom of bucket B), 20 % beats 10 % from p ~ 0.51, and 30 % would beat 20 %
only above p ~ 0.77 (bucket A, who get a call instead).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_LADDER: tuple[int, ...] = (0, 10, 20, 30)
# A 10 % discount keeps a quarter of would-be churners, 30 % half of them (an
# assumption until an A/B test measures it; configuration per bucket).
DEFAULT_UPLIFT: dict[int, float] = {0: 0.0, 10: 0.25, 20: 0.40, 30: 0.50}
DEFAULT_UPLIFT_BY_BUCKET: dict[str, dict[int, float]] = {"B": DEFAULT_UPLIFT}  # only B gets offers
DEFAULT_HORIZON_MONTHS = 6


def _validate(ladder: Sequence[int], uplift: Mapping[int, float], horizon_months: float) -> np.ndarray:
    d = np.asarray(sorted(int(x) for x in ladder), dtype=int)
    if len(d) == 0 or d[0] < 0 or d[-1] >= 100:
        raise ValueError(f"discount ladder must hold percentages in [0, 100), got {list(ladder)}")
    missing = [int(x) for x in d if int(x) not in uplift]
    if missing:
        raise ValueError(f"uplift table has no entry for discount(s) {missing}")
    bad = {k: v for k, v in uplift.items() if not np.all((0.0 <= np.asarray(v, dtype=float)) & (np.asarray(v) <= 1.0))}
    if bad:
        raise ValueError(f"uplift values must be shares in [0, 1], got {bad}")
    if horizon_months <= 0:
        raise ValueError(f"horizon_months must be positive, got {horizon_months}")
    return d


def discount_margins(
    p: np.ndarray,
    monthly_price: np.ndarray,
    ladder: Sequence[int] = DEFAULT_LADDER,
    uplift: Mapping[int, float | np.ndarray] = DEFAULT_UPLIFT,
    horizon_months: float = DEFAULT_HORIZON_MONTHS,
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted ladder, margins of shape (n, len(ladder))) in money, relative to no discount."""
    d = _validate(ladder, uplift, horizon_months)
    p = np.asarray(p, dtype=float)[:, None]
    value = np.nan_to_num(np.asarray(monthly_price, dtype=float), nan=0.0).clip(min=0.0)[:, None] * horizon_months
    # a share per rung, or per member and rung (marketing.offer_model)
    u = np.column_stack([np.broadcast_to(np.asarray(uplift[int(x)], dtype=float), p.shape[:1]) for x in d])
    share = d[None, :] / 100.0
    expected = p * u * value * (1.0 - share) - (1.0 - p) * share * value
    u0 = np.broadcast_to(np.asarray(uplift.get(0, 0.0), dtype=float), p.shape[:1])[:, None]
    baseline = p * u0 * value  # margin(0): what doing nothing keeps
    return d, expected - baseline


def choose_discount(
    p: np.ndarray,
    monthly_price: np.ndarray,
    ladder: Sequence[int] = DEFAULT_LADDER,
    uplift: Mapping[int, float] = DEFAULT_UPLIFT,
    horizon_months: float = DEFAULT_HORIZON_MONTHS,
) -> np.ndarray:
    """Discount percentage (int array) with the largest positive expected margin, else 0."""
    d, margins = discount_margins(p, monthly_price, ladder, uplift, horizon_months)
    if margins.shape[0] == 0:
        return np.zeros(0, dtype=int)
    best = margins.argmax(axis=1)  # first maximum: the smaller discount on ties
    best_margin = margins[np.arange(len(best)), best]
    return np.where(best_margin > 1e-12, d[best], 0).astype(int)


def offer_discounts(
    buckets: np.ndarray,
    p: np.ndarray,
    monthly_price: np.ndarray,
    uplift_by_bucket: Mapping[str, Mapping[int, float]] = DEFAULT_UPLIFT_BY_BUCKET,
    ladder: Sequence[int] = DEFAULT_LADDER,
    horizon_months: float = DEFAULT_HORIZON_MONTHS,
) -> np.ndarray:
    """Discount per member: choose_discount with the uplift table of the member's bucket;
    0 for buckets without a table (by default only B gets offers)."""
    buckets = np.asarray(buckets, dtype=object)
    p = np.asarray(p, dtype=float)
    price = np.asarray(monthly_price, dtype=float)
    out = np.zeros(len(buckets), dtype=int)
    for bucket, uplift in uplift_by_bucket.items():
        rows = buckets == bucket
        if rows.any():
            out[rows] = choose_discount(p[rows], price[rows], ladder, uplift, horizon_months)
    return out


def monthly_price(list_price: np.ndarray, plan_days: np.ndarray) -> np.ndarray:
    """Price per 30 days of the member's latest plan (list price; 0 when unknown or free)."""
    price = np.nan_to_num(np.asarray(list_price, dtype=float), nan=0.0)
    days = np.nan_to_num(np.asarray(plan_days, dtype=float), nan=0.0)
    return np.where(days > 0, price * 30.0 / np.where(days > 0, days, 1.0), price)
