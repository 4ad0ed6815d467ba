"""Churn-probability buckets and the marketing action each one gets.

A: p >= a_threshold (call them), B: b_threshold <= p < a_threshold (offer a
discount), C: p < b_threshold (thank them). Thresholds are configuration.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

A_THRESHOLD = 0.7
B_THRESHOLD = 0.3
BUCKETS: tuple[str, ...] = ("A", "B", "C")
ACTIONS: dict[str, str] = {
    "A": "call to understand the pain points",
    "B": "offer a discount",
    "C": "send an appreciation e-mail",
}


def validate_thresholds(a_threshold: float, b_threshold: float) -> None:
    if not 0.0 < b_threshold < a_threshold < 1.0:
        raise ValueError(
            f"bucket thresholds must satisfy 0 < b_threshold < a_threshold < 1, "
            f"got a_threshold={a_threshold}, b_threshold={b_threshold}"
        )


def assign_buckets(
    p: np.ndarray, a_threshold: float = A_THRESHOLD, b_threshold: float = B_THRESHOLD
) -> np.ndarray:
    """'A' / 'B' / 'C' per churn probability (object array, same shape as p)."""
    validate_thresholds(a_threshold, b_threshold)
    p = np.asarray(p, dtype=float)
    if np.isnan(p).any():
        raise ValueError("churn probabilities contain NaN: the model returned an invalid score")
    return np.select([p >= a_threshold, p >= b_threshold], ["A", "B"], "C").astype(object)


def actions_for(buckets: np.ndarray) -> np.ndarray:
    """The action text of each bucket (object array)."""
    actions = pd.Series(np.asarray(buckets, dtype=object)).map(ACTIONS)
    if actions.isna().any():
        raise ValueError(f"unknown bucket(s): {sorted(set(buckets) - set(ACTIONS))}")
    return actions.to_numpy(dtype=object)
