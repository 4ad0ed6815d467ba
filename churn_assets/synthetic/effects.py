"""The true effect of each marketing action on the churn decision it reaches in time.

Every effect is a shift of the churn logit (negative keeps the member), heterogeneous by
what the member is, so the experiment has something real to find:

- a call works on pain points a conversation can fix: manual payers (who must act to
  renew) and members who have already switched auto-renew off;
- a discount works on price-sensitive members who still listen, and does little for
  those who have stopped listening; each extra rung buys less than the one before;
- a renewal reminder nudges manual payers only; an appreciation e-mail barely moves anyone.

A treatment only reaches a decision that has not shown yet: one whose earliest possible
consequence (world.decision_day: a manual renewal up to a week before the expiry; for
auto-renew members, switching it off from the start of the expiry month) is dated on or
after the Monday of the contact. Contacted too late, the member still counts as treated,
with no effect, as in a real campaign.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_assets.core.buckets import ACTIONS
from churn_assets.marketing.treatments import CONTROL_ACTION, FREE_TRIAL_B_ACTION

NONE, CALL, DISCOUNT, REMINDER, APPRECIATION = range(5)
KIND_NAMES = ("none", "call", "discount", "reminder", "appreciation")
_KIND_OF_ACTION = {CONTROL_ACTION: NONE, ACTIONS["A"]: CALL, ACTIONS["B"]: DISCOUNT,
                   FREE_TRIAL_B_ACTION: REMINDER, ACTIONS["C"]: APPRECIATION}


@dataclass(frozen=True)
class Effects:
    """Logit weights of the actions; `scale` 0 gives a world where nothing works."""

    scale: float = 1.0
    call: float = 0.25
    call_manual: float = 0.55
    call_cancelled: float = 0.45
    discount_per_rung: float = 0.75     # a 10 % rung on a fully price-sensitive, listening member
    discount_curvature: float = 0.6     # rung r buys r ** curvature rungs' worth
    reminder_manual: float = 0.3
    appreciation: float = 0.03


DEFAULT_EFFECTS = Effects()
NO_EFFECTS = Effects(scale=0.0)


def action_kinds(actions: pd.Series, discount_pct: pd.Series) -> np.ndarray:
    """The kind code of each treatment row; a bucket-B row without a discount is no action."""
    kinds = actions.astype(str).map(_KIND_OF_ACTION)
    if kinds.isna().any():
        raise ValueError(f"unknown action(s): {sorted(set(actions[kinds.isna()].astype(str)))}")
    kinds = kinds.to_numpy(dtype=np.int64)
    return np.where((kinds == DISCOUNT) & (percentages(discount_pct) <= 0), NONE, kinds)


def percentages(discount_pct: pd.Series) -> np.ndarray:
    """Discount percentages as integers (missing: 0)."""
    return pd.to_numeric(discount_pct, errors="coerce").fillna(0).to_numpy().astype(np.int64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def effect_logit(effects: Effects, kind: np.ndarray, discount_pct: np.ndarray, manual: np.ndarray,
                 cancelled: np.ndarray, engagement: np.ndarray, price_sens: np.ndarray) -> np.ndarray:
    """The logit shift of each decision's action (0 for none)."""
    rungs = np.maximum(discount_pct, 0) / 10.0
    discount = (effects.discount_per_rung * rungs ** effects.discount_curvature
                * _sigmoid(1.5 * price_sens) * _sigmoid(2.0 * engagement + 1.0))
    call = effects.call + effects.call_manual * manual + effects.call_cancelled * cancelled
    shift = np.select([kind == CALL, kind == DISCOUNT, kind == REMINDER, kind == APPRECIATION],
                      [call, discount, effects.reminder_manual * manual, np.full(len(kind), effects.appreciation)],
                      0.0)
    return -effects.scale * shift


@dataclass
class TreatmentBook:
    """Treatments keyed by member and the expiry date the system saw, for the simulator."""

    key: np.ndarray             # mem * KEY_SPAN + expiry day, sorted
    kind: np.ndarray
    discount_pct: np.ndarray
    week_day: np.ndarray        # day number of the contact's Monday

    KEY_SPAN = 1 << 20          # > any day number of the simulated era

    @classmethod
    def empty(cls) -> "TreatmentBook":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z)

    @classmethod
    def of(cls, mem: np.ndarray, expire_day: np.ndarray, kind: np.ndarray, discount_pct: np.ndarray,
           week_day: np.ndarray) -> "TreatmentBook":
        key = mem.astype(np.int64) * cls.KEY_SPAN + expire_day.astype(np.int64)
        order = np.argsort(key, kind="stable")
        if len(key) and (np.diff(key[order]) == 0).any():
            raise ValueError("a member is treated twice for the same expiry")
        return cls(key[order], kind[order].astype(np.int64), discount_pct[order].astype(np.int64),
                   week_day[order].astype(np.int64))

    def lookup(self, mem: np.ndarray, expire_day: np.ndarray) -> np.ndarray:
        """Index into the book of each (member, expiry), -1 where untreated."""
        if not len(self.key):
            return np.full(len(mem), -1)
        key = mem.astype(np.int64) * self.KEY_SPAN + expire_day
        at = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        return np.where(self.key[at] == key, at, -1)
