"""Is the hold-out a fair counterfactual? Treated vs control balance of the experiment.

Two tests, both on what the assignment could have skewed:
- churn_probability: the standardized mean difference (treated minus control, over the
  pooled standard deviation) must stay within MAX_ABS_SMD;
- bucket shares: a chi-square test of arm x bucket must not reject at MIN_CHI2_P
  (scipy when installed; without it only the SMD is judged, and the result says so).

Under random assignment the SMD's chance spread is about sqrt(1/n_control + 1/n_treated):
0.1 is a real signal only with a few hundred members in the hold-out, so the experiment
to date is judged (not one week), and arms smaller than MIN_ARM_ROWS are not judged yet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churn_assets.marketing.treatments import CONTROL, TREATED

MAX_ABS_SMD = 0.1
MIN_CHI2_P = 0.01
MIN_ARM_ROWS = 30


@dataclass(frozen=True)
class Balance:
    n_treated: int
    n_control: int
    smd: float | None  # None: not computed (an arm too small)
    chi2_p: float | None  # None: not computed (an arm too small, or no scipy)
    judged: bool
    passed: bool
    reasons: list[str] = field(default_factory=list)


def standardized_mean_difference(treated: np.ndarray, control: np.ndarray) -> float:
    """(mean_t - mean_c) / sqrt((var_t + var_c) / 2); 0 when both arms are constant and equal."""
    treated, control = np.asarray(treated, dtype=float), np.asarray(control, dtype=float)
    diff = float(treated.mean() - control.mean())
    pooled = math.sqrt((treated.var(ddof=1) + control.var(ddof=1)) / 2.0)
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / pooled


def bucket_share_p_value(frame: pd.DataFrame) -> float | None:
    """p-value of the chi-square test of independence of arm and bucket (None without scipy)."""
    try:
        from scipy.stats import chi2_contingency
    except ImportError:
        return None
    table = pd.crosstab(frame["arm"], frame["bucket"]).reindex([TREATED, CONTROL], fill_value=0)
    table = table.loc[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:  # one bucket only: the shares cannot differ
        return 1.0
    return float(chi2_contingency(table.to_numpy(), correction=False).pvalue)


def control_balance(
    frame: pd.DataFrame,
    max_abs_smd: float = MAX_ABS_SMD,
    min_p: float = MIN_CHI2_P,
    min_arm_rows: int = MIN_ARM_ROWS,
) -> Balance:
    """Balance of a frame of treatments (arm, bucket, churn_probability)."""
    treated = frame.loc[frame["arm"] == TREATED]
    control = frame.loc[frame["arm"] == CONTROL]
    n_t, n_c = len(treated), len(control)
    if min(n_t, n_c) < max(min_arm_rows, 2):
        return Balance(n_t, n_c, None, None, judged=False, passed=True,
                       reasons=[f"not judged yet: {n_t} treated and {n_c} control members, "
                                f"at least {max(min_arm_rows, 2)} per arm needed"])
    smd = standardized_mean_difference(treated["churn_probability"], control["churn_probability"])
    p = bucket_share_p_value(frame)
    reasons = [f"churn_probability SMD {smd:+.3f} ({'within' if abs(smd) < max_abs_smd else 'beyond'} ±{max_abs_smd})"]
    if p is None:
        reasons.append("scipy is not installed: bucket shares not tested")
    else:
        reasons.append(f"bucket shares chi-square p = {p:.3g} ({'above' if p > min_p else 'not above'} {min_p})")
    passed = abs(smd) < max_abs_smd and (p is None or p > min_p)
    return Balance(n_t, n_c, float(smd), p, judged=True, passed=bool(passed), reasons=reasons)


def experiment_to_date(earlier: pd.DataFrame | None, this_week: pd.DataFrame) -> pd.DataFrame:
    """The treatments of earlier weeks and this week: arm, bucket, churn_probability."""
    columns = ["arm", "bucket", "churn_probability"]
    parts = [f[columns] for f in (earlier, this_week) if f is not None and len(f)]
    return pd.concat(parts, ignore_index=True) if parts else this_week[columns].iloc[0:0]
