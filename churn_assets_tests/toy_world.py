"""A small learnable feature/label world for the model tests (test support, not shipped).

Not the simulator (churn_assets.synthetic): it writes the feature store directly, with a
known true churn probability per row (a logistic function of a few features plus noise
the model cannot see), so a model's hold-out quality can be compared with the ceiling.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS, KEY_COLUMNS
from churn_assets.features.labels import final_after
from churn_assets.ingest.loading import ensure_raw_schema
from churn_assets.dates import add_months, month_end
from churn_assets.sql import replace_partition

HIDDEN_NOISE = 0.5  # sd of the logit noise behind the true probability


def toy_month(month: dt.date, n_members: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """One month of candidates: KEY_COLUMNS + FEATURE_COLUMNS + is_churn + true_churn_probability
    (the simulator's truth, hidden noise included) + observable_churn_probability (the ceiling
    of a model that sees only the features).
    `shift` moves the intercept (a concept drift knob)."""
    rng = np.random.default_rng([seed, month.year, month.month])
    n = n_members
    auto = rng.random(n) < 0.6
    cancel = rng.random(n) < 0.08
    active30 = rng.binomial(30, rng.beta(2, 2, n))
    trend = np.exp(rng.normal(0, 0.5, n))
    method = rng.choice(["41", "40", "36", "39", "38"], n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    via = rng.choice(["7", "9", "3", "4", "13"], n, p=[0.4, 0.25, 0.15, 0.15, 0.05])
    tenure = rng.gamma(2.0, 8.0, n)
    price = rng.choice([99.0, 149.0, 129.0], n)
    paid = np.where(rng.random(n) < 0.1, price * 0.5, price)
    # non-linear on purpose (thresholds, interactions), so trees have something to beat a line with
    hidden = rng.normal(0, HIDDEN_NOISE, n)  # what no model can see
    logit = (
        -3.2 + shift
        - 1.2 * auto
        + 3.0 * cancel * ~auto
        + 2.0 * (active30 < 6)
        - 1.8 * np.clip(np.log(trend), -1.5, 0)
        + 1.5 * ((method == "38") ^ (via == "7"))
        + 1.0 * (tenure < 4)
        + 0.8 * (paid < price) * ~auto
    )
    p_true = 1 / (1 + np.exp(-(logit + hidden)))
    # best calibrated guess from the features alone: E[sigmoid(logit + hidden)] (probit approximation)
    p_observable = 1 / (1 + np.exp(-logit / np.sqrt(1 + np.pi * HIDDEN_NOISE**2 / 8)))
    secs30 = active30 * rng.gamma(3.0, 1200.0, n)
    expire = pd.Timestamp(month) + pd.to_timedelta(rng.integers(0, 28, n), unit="D")
    frame = pd.DataFrame({
        "msno": [f"m{seed}_{i:07d}" for i in range(n)],
        "as_of": month,
        "membership_expire_date": expire.date,
        "last_plan_days": 30.0,
        "last_list_price": price,
        "last_amount_paid": paid,
        "last_discount_share": 1 - paid / price,
        "last_is_auto_renew": auto.astype(float),
        "last_is_cancel": cancel.astype(float),
        "last_payment_method": method,
        "days_to_expiry": (expire - pd.Timestamp(month)).days.astype(float),
        "days_since_last_txn": rng.integers(1, 31, n).astype(float),
        "cancels_30d": cancel.astype(float),
        "cancels_60d": cancel + rng.poisson(0.03, n).astype(float),
        "cancels_90d": cancel + rng.poisson(0.05, n).astype(float),
        "n_txn_90d": np.minimum(3, np.ceil(tenure)).astype(float),
        "auto_renew_share_90d": np.clip(auto + rng.normal(0, 0.2, n), 0, 1),
        "n_plan_changes_90d": rng.poisson(0.1, n).astype(float),
        "active_days_7d": np.minimum(7, rng.binomial(7, np.clip(active30 / 30 * trend / 1.5, 0, 1))).astype(float),
        "active_days_30d": active30.astype(float),
        "active_days_90d": np.minimum(90, active30 * 3 + rng.integers(0, 5, n)).astype(float),
        "secs_7d": secs30 * 7 / 30 * trend,
        "secs_14d": secs30 * 14 / 30 * np.sqrt(trend),
        "secs_30d": secs30,
        "secs_90d": secs30 * 3,
        "unq_30d": active30 * rng.poisson(20, n).astype(float),
        "plays_30d": active30 * rng.poisson(30, n).astype(float),
        "completion_share_30d": np.where(active30 > 0, rng.beta(5, 3, n), np.nan),
        "secs_trend_7_30": np.where(active30 > 0, trend, np.nan),
        "days_since_last_log": np.where(active30 > 0, rng.integers(1, 10, n), np.nan),
        "age": np.where(rng.random(n) < 0.5, rng.integers(16, 60, n), np.nan),
        "gender": rng.choice(np.array(["male", "female", None], dtype=object), n, p=[0.2, 0.15, 0.65]),
        "city": rng.choice(["1", "13", "5", "4"], n, p=[0.6, 0.2, 0.1, 0.1]),
        "registered_via": via,
        "registration_tenure_days": tenure * 30.4,
    })
    frame["is_churn"] = (rng.random(n) < p_true).astype("int64")
    frame["true_churn_probability"] = p_true
    frame["observable_churn_probability"] = p_observable
    assert list(frame.columns[: len(KEY_COLUMNS) + len(FEATURE_COLUMNS)]) == [*KEY_COLUMNS, *FEATURE_COLUMNS]
    return frame


def write_toy_world(
    con: duckdb.DuckDBPyConnection,
    months: list[dt.date],
    n_members: int,
    seed: int = 0,
    shift: float = 0.0,
    final: bool = True,
    history_months: int = 3,
) -> pd.DataFrame:
    """Write features.member_features, features.labels and one raw.transactions row per month,
    dated on the month's last day (the data covers the whole month; plus the months up to the
    one holding the newest month's last renewal day when `final`, so every month's labels are
    final by the data watermark, and the `history_months` before the first month, so every
    month counts as having full 90-day feature windows for the trainer's min_history_months).
    Returns the oracle:
    msno, target_month, true_churn_probability, observable_churn_probability, is_churn."""
    ensure_raw_schema(con)
    oracle = []
    for month in months:
        f = toy_month(month, n_members, seed, shift)
        replace_partition(con, "features.member_features", f[[*KEY_COLUMNS, *FEATURE_COLUMNS]], "as_of", month)
        labels = pd.DataFrame({
            "msno": f["msno"], "target_month": month, "last_expire": f["membership_expire_date"],
            "renewal_gap_days": np.where(f["is_churn"] == 1, np.nan, 3.0), "is_churn": f["is_churn"],
        })
        replace_partition(con, "features.labels", labels, "target_month", month)
        oracle.append(f[["msno", "as_of", "true_churn_probability", "observable_churn_probability", "is_churn"]].rename(columns={"as_of": "target_month"}))
    history = {add_months(min(months), -i) for i in range(1, history_months + 1)}
    later = set()
    if final:
        m = add_months(max(months), 1)
        while m <= final_after(max(months)):
            later.add(m)
            m = add_months(m, 1)
    for m in sorted(set(months) | history | later):
        con.execute("DELETE FROM raw.transactions WHERE partition_month = ?", [m])
        con.execute(
            "INSERT INTO raw.transactions VALUES ('toy', 41, 30, 149, 149, 1, ?, ?, 0, ?)",
            [month_end(m), add_months(m, 1), m],
        )
    return pd.concat(oracle, ignore_index=True)
