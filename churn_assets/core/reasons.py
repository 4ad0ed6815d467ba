"""Why a member is likely to leave, in words a marketer understands.

The booster's per-row SHAP contributions (raw score space, positive = pushes
towards churn) pick each member's k strongest reasons; a phrase template per
feature turns the member's own value into text ("auto-renew switched off",
"no listening for 23 days"). Templates work on a whole column at once, so the
only Python loop is over the ~30 features, never over members.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS

REASON_COLUMNS = ["reason_1", "reason_2", "reason_3"]
Template = Callable[[pd.Series], pd.Series]


# --- vectorised text helpers (Series in, Series of str out, same index) -------------------

def _n(x: pd.Series) -> pd.Series:
    return x.round().astype("int64").astype(str)


def _count(x: pd.Series, unit: str) -> pd.Series:
    """'1 day' / '5 days' (simple English plural)."""
    return pd.Series(np.where(x.round() == 1, "1 " + unit, _n(x) + " " + unit + "s"), index=x.index)


def _times(x: pd.Series) -> pd.Series:
    n = x.round()
    return pd.Series(np.select([n == 1, n == 2], ["once", "twice"], _n(x) + " times"), index=x.index)


def _pct(x: pd.Series) -> pd.Series:
    return _n(100 * x)


def _where(cond: pd.Series, a, b) -> pd.Series:
    return pd.Series(np.where(cond, a, b), index=cond.index)


def _duration(secs: pd.Series) -> pd.Series:
    return pd.Series(np.select(
        [secs < 30, secs < 3600], ["under a minute", _count(secs / 60, "minute")], _count(secs / 3600, "hour")
    ), index=secs.index)


def _cancels(window: str) -> Template:
    return lambda x: _where(x < 0.5, f"no cancellation {window}", "cancelled " + _times(x) + f" {window}")


def _active_days(days: int) -> Template:
    return lambda x: _where(
        x < 0.5, f"no listening in the last {days} days", "listened on " + _n(x) + f" of the last {days} days"
    )


def _listening(days: int) -> Template:
    return lambda x: _where(
        x <= 0, f"no listening in the last {days} days", _duration(x) + f" of listening in the last {days} days"
    )


def _trend(x: pd.Series) -> pd.Series:
    down = "listening down " + _pct(1 - x) + " % on last month"
    up = "listening up " + _pct(x - 1) + " % on last month"
    return pd.Series(np.select([x < 0.995, x > 1.005], [down, up], "listening steady on last month"), index=x.index)


# feature -> (phrase when the value is missing, template for present values)
PHRASES: dict[str, tuple[str, Template]] = {
    "last_plan_days": ("plan length unknown", lambda x: _where(
        x < 30, "short plan (" + _count(x, "day") + ")", "on a " + _n(x) + "-day plan")),
    "last_list_price": ("plan price unknown", lambda x: _where(x <= 0, "on a free plan", "plan price " + _n(x))),
    "last_amount_paid": ("amount paid unknown", lambda x: _where(
        x <= 0, "paid nothing for the current plan", "paid " + _n(x) + " for the current plan")),
    "last_discount_share": ("price paid unknown", lambda x: _where(
        x < 0.005, "paid full price", "paid with a " + _pct(x) + " % discount")),
    "last_is_auto_renew": ("auto-renew status unknown", lambda x: _where(
        x < 0.5, "auto-renew switched off", "on auto-renew")),
    "last_is_cancel": ("last payment unknown", lambda x: _where(
        x >= 0.5, "cancelled the subscription", "last transaction was a renewal")),
    "last_payment_method": ("payment method unknown", lambda x:
        "paid with a method whose members often leave (method " + x + ")"),
    "days_to_expiry": ("end of plan unknown", lambda x: _where(
        x < 0.5, "plan ends today", "plan ends in " + _count(x, "day"))),
    "days_since_last_txn": ("no payment on record", lambda x: "last payment " + _count(x, "day") + " ago"),
    "cancels_30d": ("cancellations unknown", _cancels("in the last 30 days")),
    "cancels_60d": ("cancellations unknown", _cancels("in the last 60 days")),
    "cancels_90d": ("cancellations unknown", _cancels("in the last 90 days")),
    "n_txn_90d": ("no payments in the last 90 days", lambda x: _where(
        x < 0.5, "no payments in the last 90 days", _count(x, "payment") + " in the last 90 days")),
    "auto_renew_share_90d": ("no payments in the last 90 days", lambda x:
        "auto-renew on " + _pct(x) + " % of payments in the last 90 days"),
    "n_plan_changes_90d": ("plan changes unknown", lambda x: _where(
        x < 0.5, "kept the same plan for the last 90 days", "changed plan " + _times(x) + " in the last 90 days")),
    "active_days_7d": ("no listening on record", _active_days(7)),
    "active_days_30d": ("no listening on record", _active_days(30)),
    "active_days_90d": ("no listening on record", _active_days(90)),
    "secs_7d": ("no listening on record", _listening(7)),
    "secs_14d": ("no listening on record", _listening(14)),
    "secs_30d": ("no listening on record", _listening(30)),
    "secs_90d": ("no listening on record", _listening(90)),
    "unq_30d": ("no listening on record", lambda x: _where(
        x < 0.5, "no songs played in the last 30 days", _count(x, "different song") + " in the last 30 days")),
    "plays_30d": ("no listening on record", lambda x: _where(
        x < 0.5, "no songs played in the last 30 days", _count(x, "play") + " in the last 30 days")),
    "completion_share_30d": ("no songs played in the last 30 days", lambda x:
        "plays " + _pct(x) + " % of songs to the end"),
    "secs_trend_7_30": ("no listening last month to compare with", _trend),
    "days_since_last_log": ("never listened", lambda x: "no listening for " + _count(x, "day")),
    "age": ("age not given", lambda x: _where(x < 25, "young member (" + _n(x) + ")", "member aged " + _n(x))),
    "gender": ("gender not given", lambda x: "gender group with more leavers (" + x + ")"),
    "city": ("city not given", lambda x: "lives in a city with more leavers (city " + x + ")"),
    "registered_via": ("sign-up channel unknown", lambda x:
        "signed up through a channel with high churn (channel " + x + ")"),
    "registration_tenure_days": ("registration date unknown", lambda x: _where(
        x < 60, "registered " + _count(x, "day") + " ago", "registered " + _count(x / 30.44, "month") + " ago")),
}


def describe(feature: str, values: pd.Series) -> pd.Series:
    """The phrase for each value of one feature (Series of str, same index)."""
    missing, template = PHRASES[feature]
    if feature in CATEGORICAL_COLUMNS:
        values = values.astype(object)
        present = values.notna()
        values = values.where(present, "").astype(str).str.removesuffix(".0")
    else:
        values = pd.to_numeric(values, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        present = values.notna()
        values = values.fillna(0.0)
    text = template(values) if len(values) else pd.Series([], dtype=object, index=values.index)
    return text.where(present, missing).astype(object)


def top_reasons(contributions: pd.DataFrame, features: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The k strongest reasons to churn per row, as text (None when a row has fewer than
    k positive contributions).

    contributions: SHAP values, one column per feature plus 'bias' (ignored), rows
    aligned by position with `features` (the member's feature values).
    Returns columns reason_1..reason_k on the index of `contributions`.
    """
    if len(contributions) != len(features):
        raise ValueError(f"{len(contributions)} contribution rows for {len(features)} feature rows")
    names = [c for c in contributions.columns if c != "bias"]
    unknown = sorted(set(names) - set(PHRASES))
    if unknown:
        raise ValueError(f"no reason phrase for feature(s) {unknown}")
    columns = [f"reason_{i + 1}" for i in range(k)]
    out = np.full((len(contributions), k), None, dtype=object)
    if len(contributions) and names and k > 0:
        shap = np.nan_to_num(contributions[names].to_numpy(dtype=float), nan=0.0)
        kk = min(k, len(names))
        order = np.argsort(-shap, axis=1, kind="stable")[:, :kk]
        order = np.where(np.take_along_axis(shap, order, axis=1) > 0, order, -1)
        for j in np.unique(order[order >= 0]):
            hit = order == j  # a feature sits in at most one slot per row
            rows = np.flatnonzero(hit.any(axis=1))
            values = features[names[j]].iloc[rows].reset_index(drop=True)
            out[rows, hit[rows].argmax(axis=1)] = describe(names[j], values).to_numpy()
    return pd.DataFrame(out, columns=columns, index=contributions.index)

