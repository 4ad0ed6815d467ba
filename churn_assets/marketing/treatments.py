"""Who gets what this week: marketing.treatments rows from the week's churn scores.

- Contact suppression: a member is contacted once per expiry cycle, i.e. per
  (msno, membership_expire_date). A member already in an earlier week's treatments for
  the same cycle is not a new contact; a renewal (new expiry date) starts a new cycle.
- Hold-out: per member and cycle a stable hash of "msno|expire|salt" (blake2b, not
  Python's per-process hash) mapped to [0, 1) puts the member in the control arm when it
  is below the control share. The same cycle always draws the same arm, whatever the week,
  the run or the machine; raising the share keeps everyone already in control there.
  Control members get no action and are still scored, in every bucket (C included).
- Free and trial members (paid 0 or list price 0 on their last plan) get no discount.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from churn_assets.core.buckets import ACTIONS

TREATED, CONTROL = "treated", "control"
ARMS: tuple[str, ...] = (TREATED, CONTROL)
CONTROL_ACTION = "none"
DEFAULT_CONTROL_SHARE = 0.10
DEFAULT_SALT = "retention-holdout-1"
# A discount is worth nothing to a member who pays nothing: a free or trial member of
# bucket B gets this reminder instead of the offer (A keeps the call, C the appreciation e-mail).
FREE_TRIAL_B_ACTION = "send a renewal reminder e-mail"
CYCLE_COLUMNS: list[str] = ["msno", "membership_expire_date"]
TREATMENT_COLUMNS: list[str] = [
    "week_start", "msno", "membership_expire_date", "days_to_expiry", "bucket", "arm", "action",
    "discount_pct", "churn_probability", "free_or_trial", "model_version", "scored_at",
]
_UNIT = float(2 ** 53)
TREATMENTS_TABLE = "marketing.treatments"
# The churn model predicts the risk under the baseline action: the thank-you e-mail everyone
# not singled out gets (bucket C; its measured effect is in marketing.retention_effect, so the
# assumption that it moves little is checked). Calls, discounts and reminders are interventions.
BASELINE_ACTIONS: tuple[str, ...] = (ACTIONS["C"],)
# A treatment reaches the candidate `l` (a features.labels row) of month M when its expiry is the
# label's or falls in M (an expiry pulled by a cancellation after the contact still counts).
_REACHES = """t.msno = {l}.msno AND (t.membership_expire_date = {l}.last_expire
                                OR date_trunc('month', t.membership_expire_date) = {l}.target_month)"""
# an intervention: a treated-arm action other than the baseline (a "discount" of 0 % is none)
_INTERVENTION = """(t.arm = 'treated' AND t.action NOT IN ({baseline})
                 AND NOT (t.action = {discount} AND coalesce(t.discount_pct, 0) = 0))"""
# the hold-out of the buckets that get interventions: who the intervened would have been
HELD_OUT_SQL = "(t.arm = 'control' AND t.bucket IN ('A', 'B'))"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def intervention_sql() -> str:
    """SQL predicate on a marketing.treatments row `t`: it is an intervention."""
    return _INTERVENTION.format(baseline=", ".join(map(_literal, BASELINE_ACTIONS)), discount=_literal(ACTIONS["B"]))


def reaches_sql(label_alias: str = "l") -> str:
    """SQL join condition: the marketing.treatments row `t` reaches the label row `label_alias`."""
    return _REACHES.format(l=label_alias)


def treated_candidate_sql(label_alias: str = "l") -> str:
    """SQL predicate: an intervention reached the label row `label_alias`. The churn model
    learns, and is judged, only where none did."""
    return (f"EXISTS (SELECT 1 FROM {TREATMENTS_TABLE} t WHERE {intervention_sql()} "
            f"AND {reaches_sql(label_alias)})")


def _series(values: object) -> pd.Series:
    """A scalar, list, array or Series as a Series with a fresh index (datetime64 stays datetime64)."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return pd.Series([values] if np.ndim(values) == 0 else values)


def _day_text(dates: object) -> pd.Series:
    """ISO day text of dates given as date objects, datetime64 or ISO text."""
    return pd.Series(pd.to_datetime(_series(dates))).dt.strftime("%Y-%m-%d")


def _cycle_keys(frame: pd.DataFrame) -> pd.Series:
    return frame["msno"].astype(str).reset_index(drop=True) + "|" + _day_text(frame["membership_expire_date"])


def hash_unit(msno: object, membership_expire_date: object, salt: str) -> np.ndarray:
    """A number in [0, 1) per (msno, expiry date), from blake2b of "msno|YYYY-MM-DD|salt"
    (the top 53 bits of 8 digest bytes, so the float is exact and never reaches 1)."""
    ids = _series(msno).astype(str)
    days = _day_text(membership_expire_date)
    if len(ids) != len(days):
        raise ValueError(f"{len(ids)} member ids but {len(days)} expiry dates")
    if days.isna().any():
        raise ValueError("every member needs an expiry date to draw an arm")
    digests = (hashlib.blake2b(f"{m}|{d}|{salt}".encode(), digest_size=8).digest() for m, d in zip(ids, days))
    return np.fromiter((int.from_bytes(h, "big") >> 11 for h in digests), dtype=float, count=len(ids)) / _UNIT


def control_arm(msno: object, membership_expire_date: object, share: float, salt: str) -> np.ndarray:
    """True where the member's cycle falls in the hold-out (hash_unit < share)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"control share must be in [0, 1), got {share}")
    return hash_unit(msno, membership_expire_date, salt) < share


def free_or_trial(amount_paid: object, list_price: object) -> np.ndarray:
    """True where the last plan was paid 0 or listed at 0 (unknown prices count as paying)."""
    paid = pd.to_numeric(_series(amount_paid), errors="coerce")
    listed = pd.to_numeric(_series(list_price), errors="coerce")
    return ((paid == 0) | (listed == 0)).to_numpy(dtype=bool)


def is_new_contact(frame: pd.DataFrame, earlier: pd.DataFrame | None) -> np.ndarray:
    """True per row of `frame` (msno, membership_expire_date) whose cycle is not in `earlier`."""
    if earlier is None or earlier.empty or frame.empty:
        return np.ones(len(frame), dtype=bool)
    return ~_cycle_keys(frame).isin(set(_cycle_keys(earlier))).to_numpy()


def new_contacts(scores: pd.DataFrame, earlier: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of `scores` (one week of scoring.churn_scores) whose cycle (msno,
    membership_expire_date) is not in `earlier` (marketing.treatments of earlier weeks)."""
    if scores["msno"].duplicated().any():
        raise ValueError("scores list a member twice in one week")
    return scores.reset_index(drop=True)[is_new_contact(scores, earlier)].reset_index(drop=True)


def assign_treatments(
    scores: pd.DataFrame,
    earlier: pd.DataFrame | None,
    control_share: float = DEFAULT_CONTROL_SHARE,
    salt: str = DEFAULT_SALT,
) -> pd.DataFrame:
    """marketing.treatments rows (TREATMENT_COLUMNS, by msno) for this week's new contacts.

    `scores` is one week of scoring.churn_scores with last_amount_paid and last_list_price
    (from scoring.scoring_features); `earlier` the treatments of earlier weeks (or None).
    Treated rows keep the score's action and discount, except that free/trial members get no
    discount (bucket B: FREE_TRIAL_B_ACTION); control rows get CONTROL_ACTION and 0 %."""
    contacts = new_contacts(scores, earlier).sort_values("msno", kind="stable").reset_index(drop=True)
    control = control_arm(contacts["msno"], contacts["membership_expire_date"], control_share, salt)
    free = free_or_trial(contacts["last_amount_paid"], contacts["last_list_price"])
    action = contacts["action"].astype(object).to_numpy(copy=True)
    action[free & (contacts["bucket"] == "B").to_numpy()] = FREE_TRIAL_B_ACTION
    action[control] = CONTROL_ACTION
    discount = contacts["discount_pct"].fillna(0).astype("int32").to_numpy(copy=True)
    discount[control | free] = 0
    out = pd.DataFrame({
        "week_start": pd.to_datetime(contacts["week_start"]).dt.date.astype(object),
        "msno": contacts["msno"].astype(str),
        "membership_expire_date": pd.to_datetime(contacts["membership_expire_date"]).dt.date.astype(object),
        "days_to_expiry": contacts["days_to_expiry"].astype("int32"),
        "bucket": contacts["bucket"].astype(str),
        "arm": np.where(control, CONTROL, TREATED).astype(object),
        "action": action,
        "discount_pct": discount.astype("int32"),
        "churn_probability": contacts["churn_probability"].astype(float),
        "free_or_trial": free,
        "model_version": contacts["model_version"].astype(str),
        "scored_at": pd.to_datetime(contacts["scored_at"]),
    })
    # text as "string": an empty first week still creates VARCHAR columns, not NULL-typed ones
    return out[TREATMENT_COLUMNS].astype({c: "string" for c in ("msno", "bucket", "arm", "action", "model_version")})


def arm_counts(treatments: pd.DataFrame, buckets: tuple[str, ...] = ("A", "B", "C")) -> dict[str, int]:
    """{"treated_A": n, ..., "control_C": n}: new contacts per arm and bucket."""
    counts = treatments.groupby(["arm", "bucket"]).size() if len(treatments) else pd.Series(dtype=int)
    return {f"{arm}_{b}": int(counts.get((arm, b), 0)) for arm in ARMS for b in buckets}
