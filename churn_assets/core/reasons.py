"""Why a member is likely to leave, in words a marketer can act on.

Wording: each phrase says what the member's value is, and a trait is never worded as a
change. A member whose payments in the last 90 days were all manual "pays manually", one
whose latest payment is manual after auto-renew ones "switched auto-renew off"; "cancelled"
only when they did. A phrase may read the member's other features (the plan's price, the
date of the latest payment), so templates get the member's row as context.

Ranking: the booster's per-row SHAP contributions (raw score space, positive = pushes
towards churn) say what raises each member's risk, but among at-risk members the same few
features push everyone (manual payment, low listening), so the top three by size read the
same for everyone. Reasons are ranked by how much more a feature pushes this member than it
pushes the members explained with them (contribution minus that population's mean), among
the churn-pushing (positive) contributions only, and a member's reasons come from distinct
feature families (cancels_30d/60d/90d tell one story).

Everything is vectorised: the only Python loops are over features and families, never over
members.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS

REASON_COLUMNS = ["reason_1", "reason_2", "reason_3"]
# A batch of a few rows cannot tell what is usual: its mean contribution is shrunk towards 0 (about
# the mean of TreeSHAP contributions over the training data) as if this many rows at 0 had been seen.
PRIOR_ROWS = 20


class Context:
    """The member's other feature values, aligned with the values a template describes;
    a feature the caller did not pass reads as missing (NaN)."""

    def __init__(self, frame: pd.DataFrame | None, index: pd.Index):
        self._frame, self._index = frame, index

    def __call__(self, name: str) -> pd.Series:
        if self._frame is None or name not in self._frame.columns:
            return pd.Series(np.nan, index=self._index)
        values = pd.to_numeric(self._frame[name], errors="coerce").astype(float)
        return pd.Series(values.replace([np.inf, -np.inf], np.nan).to_numpy(), index=self._index)


Template = Callable[[pd.Series, Context], pd.Series]


# --- vectorised text helpers (Series in, Series of str out, same index) -------------------

def _n(x: pd.Series) -> pd.Series:
    return x.fillna(0).round().astype("int64").astype(str)


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


def _ago(days: pd.Series) -> pd.Series:
    """'today' / 'yesterday' / '12 days ago' / 'recently' (date unknown)."""
    return pd.Series(np.select([days.isna(), days.round() <= 0, days.round() == 1],
                               ["recently", "today", "yesterday"], _count(days, "day") + " ago"), index=days.index)


def _duration(secs: pd.Series) -> pd.Series:
    return pd.Series(np.select(
        [secs < 30, secs < 3600], ["under a minute", _count(secs / 60, "minute")], _count(secs / 3600, "hour")
    ), index=secs.index)


def _plain(template: Callable[[pd.Series], pd.Series]) -> Template:
    """A template that needs only the feature's own value."""
    return lambda x, _: template(x)


# --- renewal: auto-renew and cancellations, one story -------------------------------------

def _renewal(auto: pd.Series, ctx: Context) -> pd.Series:
    """What the member's renewal set-up is, from the latest payment and the 90 days before:
    cancelled / switched auto-renew off / pays manually / on auto-renew (NaN auto: None)."""
    share, since = ctx("auto_renew_share_90d"), ctx("days_since_last_txn")
    manual_payments = (ctx("n_txn_90d") * (1 - share)).round()
    # the switch is dated only when the latest payment is the one manual payment in the window
    switched = _where(manual_payments == 1, "switched auto-renew off " + _ago(since),
                      "switched auto-renew off recently")
    monthly = ctx("last_plan_days").between(28, 31)
    manual = _where(monthly, "pays manually each month (no auto-renew)", "pays manually (no auto-renew)")
    text = np.select(
        [ctx("last_is_cancel") >= 0.5, auto >= 0.5, share > 0],
        ["cancelled the subscription " + _ago(since), "on auto-renew", switched], manual,
    )
    return pd.Series(text, index=auto.index, dtype=object).where(auto.notna(), None)


def _auto_renew_share(x: pd.Series, ctx: Context) -> pd.Series:
    own = _where(x <= 0, "no payment on auto-renew in the last 90 days",
                 "auto-renew on " + _pct(x) + " % of payments in the last 90 days")
    state = _renewal(ctx("last_is_auto_renew"), ctx)
    # "on auto-renew" would hide the share; the other states are what the share means
    return state.where(state.notna() & (state != "on auto-renew"), own)


def _last_cancel(x: pd.Series, ctx: Context) -> pd.Series:
    return _where(x >= 0.5, "cancelled the subscription " + _ago(ctx("days_since_last_txn")),
                  "latest payment was a renewal, not a cancellation")


def _cancels(window: str) -> Template:
    return _plain(lambda x: _where(x < 0.5, f"no cancellation {window}", "cancelled " + _times(x) + f" {window}"))


# --- plan and price ------------------------------------------------------------------------

def _plan(days: pd.Series, price: pd.Series) -> pd.Series:
    """'on a 30-day plan at 149' / 'on a free 7-day plan' / 'on a 30-day plan' (price unknown)."""
    plan = _where(days.notna(), "a " + _n(days) + "-day plan", "a plan")
    free = "free " + _where(days.notna(), _n(days) + "-day plan", "plan")
    return "on " + pd.Series(np.select([price <= 0, price > 0], ["a " + free, plan + " at " + _n(price)], plan),
                             index=days.index)


def _paid(paid: pd.Series, price: pd.Series, discount: pd.Series) -> pd.Series:
    """What the member paid for the latest plan against its list price, from what is known."""
    listed = price > 0
    share = _where(listed & paid.notna(), 1 - paid / price, discount)
    full = _where(listed, "paid the full price of " + _n(price), "paid full price")
    off = _where(listed & paid.notna(), "paid " + _n(paid) + " for a plan listed at " + _n(price)
                 + " (" + _pct(share) + " % off)", "paid with a " + _pct(share) + " % discount")
    nothing = pd.Series(np.select(
        [listed, price == 0], ["paid nothing for a plan listed at " + _n(price), "paid nothing (free plan)"],
        "paid nothing for the current plan",
    ), index=paid.index)
    text = np.select(
        [(price <= 0) | (paid <= 0) | (share >= 0.995), share < 0.005, share.notna()],
        [nothing, full, off], "paid " + _n(paid) + " for the current plan",
    )
    return pd.Series(text, index=paid.index)


# --- listening -----------------------------------------------------------------------------

def _active_days(days: int) -> Template:
    return _plain(lambda x: _where(
        x < 0.5, f"no listening in the last {days} days", "listened on " + _n(x) + f" of the last {days} days"
    ))


def _listening(days: int) -> Template:
    return _plain(lambda x: _where(
        x <= 0, f"no listening in the last {days} days", _duration(x) + f" of listening in the last {days} days"
    ))


def _trend(x: pd.Series) -> pd.Series:
    down = "listening down " + _pct(1 - x) + " % on last month"
    up = "listening up " + _pct(x - 1) + " % on last month"
    return pd.Series(np.select(
        [x <= 0.005, x < 0.995, x > 1.005],
        ["no listening in the last 7 days after listening earlier in the month", down, up],
        "listening steady on last month",
    ), index=x.index)


def _last_listened(x: pd.Series) -> pd.Series:
    return _where(x.round() <= 1, "listened yesterday", "last listened " + _count(x, "day") + " ago")


# feature -> (phrase when the value is missing, template for present values)
PHRASES: dict[str, tuple[str, Template]] = {
    "last_plan_days": ("plan length unknown", lambda x, ctx: _plan(x, ctx("last_list_price"))),
    "last_list_price": ("plan price unknown", lambda x, ctx: _plan(ctx("last_plan_days"), x)),
    "last_amount_paid": ("amount paid unknown", lambda x, ctx: _paid(
        x, ctx("last_list_price"), ctx("last_discount_share"))),
    "last_discount_share": ("price paid unknown", lambda x, ctx: _paid(
        ctx("last_amount_paid"), ctx("last_list_price"), x)),
    "last_is_auto_renew": ("auto-renew status unknown", _renewal),
    "last_is_cancel": ("latest payment unknown", _last_cancel),
    "last_payment_method": ("payment method unknown", _plain(lambda x:
        "pays by a method whose members often leave (method " + x + ")")),
    "days_to_expiry": ("end of plan unknown", _plain(lambda x: _where(
        x < 0.5, "plan ends today", "plan ends in " + _count(x, "day")))),
    "days_since_last_txn": ("no payment on record", _plain(lambda x: "latest payment " + _ago(x))),
    "cancels_30d": ("cancellations unknown", _cancels("in the last 30 days")),
    "cancels_60d": ("cancellations unknown", _cancels("in the last 60 days")),
    "cancels_90d": ("cancellations unknown", _cancels("in the last 90 days")),
    "n_txn_90d": ("no payments in the last 90 days", _plain(lambda x: _where(
        x < 0.5, "no payments in the last 90 days", _count(x, "payment") + " in the last 90 days"))),
    "auto_renew_share_90d": ("no payments in the last 90 days", _auto_renew_share),
    "n_plan_changes_90d": ("plan changes unknown", _plain(lambda x: _where(
        x < 0.5, "kept the same plan for the last 90 days", "changed plan " + _times(x) + " in the last 90 days"))),
    "active_days_7d": ("no listening on record", _active_days(7)),
    "active_days_30d": ("no listening on record", _active_days(30)),
    "active_days_90d": ("no listening on record", _active_days(90)),
    "secs_7d": ("no listening on record", _listening(7)),
    "secs_14d": ("no listening on record", _listening(14)),
    "secs_30d": ("no listening on record", _listening(30)),
    "secs_90d": ("no listening on record", _listening(90)),
    "unq_30d": ("no listening on record", _plain(lambda x: _where(
        x < 0.5, "no songs played in the last 30 days", _count(x, "different song") + " in the last 30 days"))),
    "plays_30d": ("no listening on record", _plain(lambda x: _where(
        x < 0.5, "no songs played in the last 30 days", _count(x, "play") + " in the last 30 days"))),
    "completion_share_30d": ("no songs played in the last 30 days", _plain(lambda x:
        "plays " + _pct(x) + " % of songs to the end")),
    "secs_trend_7_30": ("no listening last month to compare with", _plain(_trend)),
    "days_since_last_log": ("never listened", _plain(_last_listened)),
    "age": ("age not given", _plain(lambda x: _where(
        x < 25, "young member (" + _n(x) + ")", "member aged " + _n(x)))),
    "gender": ("gender not given", _plain(lambda x: "gender group with more leavers (" + x + ")")),
    "city": ("city not given", _plain(lambda x: "lives in a city with more leavers (city " + x + ")")),
    "registered_via": ("sign-up channel unknown", _plain(lambda x:
        "signed up through a channel with high churn (channel " + x + ")")),
    "registration_tenure_days": ("registration date unknown", _plain(lambda x: _where(
        x < 60, "registered " + _count(x, "day") + " ago", "registered " + _count(x / 30.44, "month") + " ago"))),
}

# features that tell one story: a member's reasons never take two from one family (the
# listening volumes all say "listens little", and their phrases can coincide word for word)
FAMILIES: dict[str, tuple[str, ...]] = {
    "renewal": ("last_is_auto_renew", "auto_renew_share_90d", "last_is_cancel",
                "cancels_30d", "cancels_60d", "cancels_90d"),
    "plan and price": ("last_plan_days", "last_list_price", "last_amount_paid", "last_discount_share"),
    "payments": ("days_since_last_txn", "n_txn_90d"),
    "listening": ("active_days_7d", "active_days_30d", "active_days_90d", "secs_7d", "secs_14d", "secs_30d",
                  "secs_90d", "unq_30d", "plays_30d", "days_since_last_log"),
}
FAMILY: dict[str, str] = {f: family for family, members in FAMILIES.items() for f in members}


def family_of(feature: str) -> str:
    """The feature's family (a feature of no listed family is its own)."""
    return FAMILY.get(feature, feature)


def describe(feature: str, values: pd.Series, context: pd.DataFrame | None = None) -> pd.Series:
    """The phrase for each value of one feature (Series of str, same index). `context`: the
    members' feature rows, aligned by position with `values` (other features a phrase reads)."""
    missing, template = PHRASES[feature]
    if feature in CATEGORICAL_COLUMNS:
        values = values.astype(object)
        present = values.notna()
        values = values.where(present, "").astype(str).str.removesuffix(".0")
    else:
        values = pd.to_numeric(values, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        present = values.notna()
    if context is not None and len(context) != len(values):
        raise ValueError(f"{len(context)} context rows for {len(values)} values")
    if not len(values):
        return pd.Series([], dtype=object, index=values.index)
    text = template(values, Context(context, values.index))
    return text.where(present, missing).astype(object)


def rank_reasons(contributions: np.ndarray, families: list[str], k: int,
                 baseline: np.ndarray | None = None) -> np.ndarray:
    """Per row, the column indices of its k reasons (-1 for an empty slot): positive
    contributions only, ordered by contribution minus `baseline` (default: the rows' mean,
    shrunk towards 0 by PRIOR_ROWS), then by contribution; at most one per family."""
    shap = np.nan_to_num(np.asarray(contributions, dtype=float), nan=0.0)
    n, f = shap.shape
    if baseline is None:
        baseline = shap.sum(axis=0) / (n + PRIOR_ROWS)
    excess = shap - np.asarray(baseline, dtype=float)
    positive = shap > 0
    order = np.lexsort((-shap, -excess, ~positive), axis=1)  # last key first: positives lead
    codes = pd.factorize(pd.Series(families))[0]
    family = codes[order]
    wanted = np.take_along_axis(positive, order, axis=1)
    keep = np.zeros_like(wanted)
    seen = np.zeros((n, codes.max(initial=-1) + 1), dtype=bool)
    rows = np.arange(n)
    for j in range(f):  # positions in each row's order, vectorised over members
        keep[:, j] = wanted[:, j] & ~seen[rows, family[:, j]]
        seen[rows, family[:, j]] |= wanted[:, j]
    slot = np.cumsum(keep, axis=1) - 1
    out = np.full((n, k), -1, dtype=np.int64)
    r, c = np.nonzero(keep & (slot < k))
    out[r, slot[r, c]] = order[r, c]
    return out


def top_reasons(contributions: pd.DataFrame, features: pd.DataFrame, k: int = 3,
                baseline: pd.Series | None = None) -> pd.DataFrame:
    """The k reasons to churn per row that set the member apart, as text (None when a row
    has fewer than k positive contributions from distinct families).

    contributions: SHAP values, one column per feature plus 'bias' (ignored), rows aligned
    by position with `features` (the member's feature values). baseline: what a feature
    usually contributes (per feature; missing features 0), default the mean over these rows
    (shrunk towards 0 for small batches), so a reason shared by every row ranks after what
    is particular to the member.
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
        base = None if baseline is None else baseline.reindex(names).fillna(0.0).to_numpy(float)
        chosen = rank_reasons(contributions[names].to_numpy(dtype=float), [family_of(c) for c in names], k, base)
        for j in np.unique(chosen[chosen >= 0]):
            hit = chosen == j  # a feature sits in at most one slot per row
            rows = np.flatnonzero(hit.any(axis=1))
            member = features.iloc[rows].reset_index(drop=True)
            out[rows, hit[rows].argmax(axis=1)] = describe(names[j], member[names[j]], member).to_numpy()
    return pd.DataFrame(out, columns=columns, index=contributions.index)
