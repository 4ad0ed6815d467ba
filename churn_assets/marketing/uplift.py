"""Learn the offer from the experiment's own evidence. Pure (no Dagster).

- Uplift per bucket and rung: the share of would-be churners an action keeps, i.e. the rung's
  relative churn reduction against its own control (marketing.retention_effect rung rows),
  pooled over the months final so far. The rungs share one scale: the assumed table times the
  factor the measured rungs support (weighted least squares through the origin), so a rung
  rarely offered is not left at an optimistic assumption when its neighbours measured less.
  Each estimate is then shrunk towards that scaled prior (normal, sd PRIOR_SD) by its own
  precision: a rung with a handful of outcomes moves little, a well-measured one says what
  it measured.
- Decision at a lower bound: a discount is paid by every member who would have stayed anyway,
  so on thin margins an estimate that is merely unbiased still loses money (the score's
  errors pick the members where it looks best). A measured rung is therefore offered on the
  one-sided lower bound of its posterior (`uplift_low`, DEFAULT_OFFER_CONFIDENCE): the
  system discounts only what the experiment says pays. A rung not yet measured keeps the
  configured assumption.
- Per member (opt-in, per_member_offer): once enough outcomes are final, bucket B's discount comes from
  marketing.offer_model (a logistic model of the outcomes on score, listening and rung)
  instead of this table; the table still ranks the calls and is reported beside it.
- Exploration: a stable share of bucket-B members (hash of member and expiry) is offered a
  rung drawn at random from the ladder instead of the best one, so every rung keeps being
  measured and a rung that looks bad early can recover.
- Call capacity: bucket A is the top K new contacts of the week by expected incremental value
  of a call (p * call uplift * value), not everyone above a fixed threshold.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from churn_assets.core.buckets import ACTIONS, assign_buckets
from churn_assets.marketing.offer_model import DEFAULT_OFFER_CONFIDENCE, OfferModel
from churn_assets.marketing.treatments import hash_unit

PRIOR_SD = 0.25
DEFAULT_CALL_UPLIFT = 0.30           # assumed until measured: a call keeps 30 % of would-be churners
DEFAULT_EXPLORATION_SHARE = 0.20
EXPLORATION_SALT = "offer-exploration-1"
UPLIFT_COLUMNS = ["bucket", "action", "discount_pct", "n_treated", "n_control", "observed", "observed_se",
                  "prior", "scaled_prior", "weight", "uplift", "uplift_low"]


@dataclass(frozen=True)
class UpliftEstimate:
    table: pd.DataFrame  # UPLIFT_COLUMNS, one row per bucket x rung with a prior or evidence
    model: OfferModel | None = None  # bucket B's discount per member, once enough outcomes are final

    def by_bucket(self, bucket: str = "B", column: str = "uplift") -> dict[int, float]:
        """{discount_pct: uplift} of the bucket's discount rungs, 0 % keeping nobody; `column`
        "uplift_low" gives the lower bounds the offer is decided on."""
        rows = self.table[(self.table["bucket"] == bucket) & (self.table["action"] == ACTIONS["B"])]
        return {0: 0.0, **{int(d): float(u) for d, u in zip(rows["discount_pct"], rows[column])}}

    def call(self) -> float:
        rows = self.table[self.table["action"] == ACTIONS["A"]]
        return float(rows["uplift"].iloc[0])


def _pooled(rungs: pd.DataFrame) -> pd.DataFrame:
    """Churned and members per arm, summed over months, per (bucket, action, discount_pct)."""
    frame = rungs.assign(k_t=rungs["churn_rate_treated"] * rungs["n_treated"],
                         k_c=rungs["churn_rate_control"] * rungs["n_control"],
                         discount_pct=rungs["discount_pct"].fillna(0).astype(int))
    return frame.groupby(["bucket", "action", "discount_pct"], as_index=False)[
        ["k_t", "n_treated", "k_c", "n_control"]].sum()


def learn_uplift(rungs: pd.DataFrame | None, prior: Mapping[int, float], call_prior: float = DEFAULT_CALL_UPLIFT,
                 prior_sd: float = PRIOR_SD, confidence: float = DEFAULT_OFFER_CONFIDENCE) -> UpliftEstimate:
    """Shrunk uplift of bucket B's discount rungs (prior: the assumed {discount: uplift}) and of
    bucket A's call, from retention_effect rung rows (None or empty: the priors); uplift_low is
    the one-sided `confidence` lower bound of a measured row's posterior (the prior where none)."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"offer confidence must be in [0.5, 1), got {confidence}")
    priors = pd.DataFrame(
        [("B", ACTIONS["B"], int(d), float(u)) for d, u in prior.items() if int(d) > 0]
        + [("A", ACTIONS["A"], 0, float(call_prior))], columns=["bucket", "action", "discount_pct", "prior"])
    evidence = _pooled(rungs) if rungs is not None and len(rungs) else pd.DataFrame(
        columns=["bucket", "action", "discount_pct", "k_t", "n_treated", "k_c", "n_control"])
    out = priors.merge(evidence, on=["bucket", "action", "discount_pct"], how="left")

    def column(name: str) -> np.ndarray:
        return pd.to_numeric(out[name], errors="coerce").fillna(0.0).to_numpy(float)

    n_t, n_c = column("n_treated"), column("n_control")
    with np.errstate(divide="ignore", invalid="ignore"):
        # a rate of 0 gets half a member's worth of variance (never zero precision from nothing)
        rt = np.where(n_t > 0, column("k_t") / n_t, np.nan)
        rc = np.where(n_c > 0, column("k_c") / n_c, np.nan)
        var_t = np.maximum(rt * (1 - rt), 0.5 / np.maximum(n_t, 1)) / n_t
        var_c = np.maximum(rc * (1 - rc), 0.5 / np.maximum(n_c, 1)) / n_c
        observed = 1.0 - rt / rc
        # the difference's standard error on the control's scale: unlike the ratio's delta method
        # it stays wide when a small arm happens to show no churner at all
        se = np.sqrt(var_t + var_c) / rc
    known = np.isfinite(observed) & np.isfinite(se) & (rc > 0)
    weight = np.where(known, prior_sd ** 2 / (prior_sd ** 2 + np.where(known, se, 1.0) ** 2), 0.0)
    prior_values = out["prior"].to_numpy(float)
    discounts = (out["bucket"] == "B").to_numpy() & known
    if discounts.any():    # the ladder's common scale, from its measured rungs
        precision = 1.0 / se[discounts] ** 2
        scale = float(np.sum(precision * observed[discounts] * prior_values[discounts])
                      / np.sum(precision * prior_values[discounts] ** 2))
        prior_values = np.where((out["bucket"] == "B").to_numpy(), prior_values * np.clip(scale, 0.0, 2.0),
                                prior_values)
    uplift = np.clip(np.where(known, weight * observed + (1 - weight) * prior_values, prior_values), 0.0, 1.0)
    # the normal-normal posterior's sd is sqrt(weight) * se (weight = prior var / (prior var + se^2))
    posterior_sd = np.sqrt(weight) * np.where(known, se, 0.0)
    uplift_low = np.clip(uplift - norm.ppf(confidence) * posterior_sd, 0.0, 1.0)
    table = out.assign(scaled_prior=prior_values, n_treated=n_t.astype(int), n_control=n_c.astype(int),
                       observed=np.where(known, observed, np.nan),
                       observed_se=np.where(known, se, np.nan), weight=weight, uplift=uplift,
                       uplift_low=uplift_low)
    return UpliftEstimate(table[UPLIFT_COLUMNS].reset_index(drop=True))


def explore_offers(msno: Sequence[str], expire: Sequence, buckets: np.ndarray, discount: np.ndarray,
                   can_discount: np.ndarray, ladder: Sequence[int], share: float = DEFAULT_EXPLORATION_SHARE,
                   salt: str = EXPLORATION_SALT) -> tuple[np.ndarray, np.ndarray]:
    """(discounts, explored): a `share` of bucket-B members who can get a discount is offered a
    rung of the ladder drawn at random (both draws by stable hash of member and expiry, so a
    re-run offers the same); the rest keep `discount`."""
    rungs = np.array(sorted(int(d) for d in ladder if int(d) > 0))
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"exploration share must be in [0, 1], got {share}")
    explored = (np.asarray(buckets) == "B") & np.asarray(can_discount, dtype=bool)
    if len(explored) == 0 or not len(rungs) or share == 0.0:
        return np.asarray(discount).copy(), np.zeros(len(explored), dtype=bool)
    explored &= hash_unit(msno, expire, salt) < share
    pick = np.minimum((hash_unit(msno, expire, salt + "/rung") * len(rungs)).astype(int), len(rungs) - 1)
    return np.where(explored, rungs[pick], discount), explored


def capacity_buckets(p: np.ndarray, value: np.ndarray, new_contact: np.ndarray, capacity: int | None,
                     call_uplift: float, a_threshold: float, b_threshold: float) -> np.ndarray:
    """'A'/'B'/'C' per member. Without a capacity: the thresholds. With one: the `capacity` new
    contacts at or above b_threshold with the largest expected value of a call
    (p * call_uplift * value; ties by p) are A, the other new contacts at or above b_threshold
    are B. Members contacted earlier this cycle keep the thresholds' bucket (their action is
    already fixed; they do not use this week's calls)."""
    buckets = assign_buckets(p, a_threshold, b_threshold)
    if capacity is None:
        return buckets
    if capacity < 0:
        raise ValueError(f"call capacity must be >= 0, got {capacity}")
    eligible = np.asarray(new_contact, dtype=bool) & (np.asarray(p) >= b_threshold)
    ev = np.asarray(p) * call_uplift * np.nan_to_num(np.asarray(value, dtype=float))
    order = np.lexsort((-np.asarray(p), -ev))               # by value, then by risk
    ranked = order[eligible[order]][:capacity]
    out = buckets.copy()
    out[eligible] = "B"
    out[ranked] = "A"
    return out
