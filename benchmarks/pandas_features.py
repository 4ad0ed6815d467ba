"""Pandas baseline of the member features: the straightforward notebook way.

Same columns and values as churn_assets.features.member_features.build_member_features,
written with filters, sort_values and groupby over in-memory frames (the frames hold the
raw tables, e.g. from `con.sql("SELECT * FROM raw.user_logs").df()`). Used by the
benchmark and by the equivalence test; not by the pipeline.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, KEY_COLUMNS


def _as_text(s: pd.Series) -> pd.Series:
    """Integer codes as text ('41'), missing as ''; floats from nullable ints drop '.0'."""
    return s.astype("Int64").astype("string").fillna("")


def _distinct(a: pd.Series, b: pd.Series) -> pd.Series:
    """SQL `a IS DISTINCT FROM b`."""
    return (a != b) & ~(a.isna() & b.isna())


def _floats(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Nullable integer columns (DuckDB's .df() gives Int32 with <NA>) as float64 with NaN."""
    return df.astype({c: "float64" for c in columns})


def _transaction_features(tx: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    tx = _floats(tx[tx.transaction_date < as_of], [
        "payment_method_id", "payment_plan_days", "plan_list_price", "actual_amount_paid",
        "is_auto_renew", "is_cancel",
    ])
    tx["is_cancel"] = tx.is_cancel.fillna(0)
    # official churn-rule order reversed (latest first), ties as in latest_first.sql
    tx["sig"] = _as_text(tx.plan_list_price) + _as_text(tx.payment_plan_days) + _as_text(tx.payment_method_id)
    epoch_days = (tx.membership_expire_date - pd.Timestamp("1970-01-01")).dt.days
    tx["expire_key"] = np.where(tx.is_cancel == 1, -1, 1) * epoch_days
    tx["amount_key"] = tx.actual_amount_paid.fillna(-1)
    tx["auto_key"] = tx.is_auto_renew.fillna(-1)
    tx = tx.sort_values(
        ["msno", "transaction_date", "sig", "is_cancel", "expire_key", "amount_key", "auto_key"],
        ascending=[True, False, True, False, False, False, False],
    )
    # the next row in latest-first order is the previous transaction in time
    for col in ("transaction_date", "plan_list_price", "payment_plan_days", "payment_method_id"):
        tx["prev_" + col] = tx.groupby("msno", sort=False)[col].shift(-1)

    def since(days: int) -> pd.Series:
        return tx.transaction_date >= as_of - pd.Timedelta(days=days)

    tx["cancel_30"] = (tx.is_cancel == 1) & since(30)
    tx["cancel_60"] = (tx.is_cancel == 1) & since(60)
    tx["cancel_90"] = (tx.is_cancel == 1) & since(90)
    tx["in_90"] = since(90)
    tx["plan_change"] = (tx.prev_transaction_date >= as_of - pd.Timedelta(days=90)) & (
        _distinct(tx.plan_list_price, tx.prev_plan_list_price)
        | _distinct(tx.payment_plan_days, tx.prev_payment_plan_days)
        | _distinct(tx.payment_method_id, tx.prev_payment_method_id)
    )

    by = tx.groupby("msno", sort=False)
    latest = tx.drop_duplicates("msno").set_index("msno")
    out = pd.DataFrame(index=latest.index)
    out["membership_expire_date"] = latest.membership_expire_date
    out["last_plan_days"] = latest.payment_plan_days
    out["last_list_price"] = latest.plan_list_price
    out["last_amount_paid"] = latest.actual_amount_paid
    out["last_discount_share"] = np.where(
        latest.plan_list_price == 0, 0.0, 1 - latest.actual_amount_paid / latest.plan_list_price
    )
    out["last_discount_share"] = out.last_discount_share.where(latest.plan_list_price.notna())
    out["last_is_auto_renew"] = latest.is_auto_renew
    out["last_is_cancel"] = latest.is_cancel
    out["last_payment_method"] = _as_text(latest.payment_method_id).replace("", None)
    out["days_to_expiry"] = (latest.membership_expire_date - as_of).dt.days
    out["days_since_last_txn"] = (as_of - latest.transaction_date).dt.days
    sums = by[["cancel_30", "cancel_60", "cancel_90", "in_90", "plan_change"]].sum()
    out["cancels_30d"] = sums.cancel_30
    out["cancels_60d"] = sums.cancel_60
    out["cancels_90d"] = sums.cancel_90
    out["n_txn_90d"] = sums.in_90
    out["auto_renew_share_90d"] = tx[tx.in_90].groupby("msno").is_auto_renew.mean()
    out["n_plan_changes_90d"] = sums.plan_change
    return out


def _log_features(logs: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    logs = logs[(logs.date >= as_of - pd.Timedelta(days=90)) & (logs.date < as_of)]
    logs = _floats(logs, ["num_25", "num_50", "num_75", "num_985", "num_100", "num_unq", "total_secs"])
    logs["days_ago"] = (as_of - logs.date).dt.days
    logs["secs"] = logs.total_secs.where(logs.total_secs.between(0, 86400))  # sentinels out
    logs["plays"] = logs[["num_25", "num_50", "num_75", "num_985", "num_100"]].fillna(0).sum(axis=1)
    logs["num_100"] = logs.num_100.fillna(0)

    out = pd.DataFrame(index=pd.Index(logs.msno.unique(), name="msno"))
    for days in (7, 30, 90):
        recent = logs[logs.days_ago <= days]
        out[f"active_days_{days}d"] = recent.groupby("msno").date.nunique()
    for days in (7, 14, 30, 90):
        out[f"secs_{days}d"] = logs[logs.days_ago <= days].groupby("msno").secs.sum()
    last30 = logs[logs.days_ago <= 30].groupby("msno")
    out["unq_30d"] = last30.num_unq.sum()
    out["plays_30d"] = last30.plays.sum()
    out["completion_share_30d"] = last30.num_100.sum() / out.plays_30d.replace(0, np.nan)
    out = out.fillna({c: 0 for c in out.columns if c != "completion_share_30d"})
    out["secs_trend_7_30"] = (out.secs_7d / 7) / (out.secs_30d / 30).replace(0, np.nan)
    out["days_since_last_log"] = (as_of - logs.groupby("msno").date.max()).dt.days
    return out


def _profile_features(members: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    # latest snapshot before as_of, else the earliest one
    m = _floats(members, ["city", "bd", "registered_via"]).assign(
        after=members.snapshot_month >= as_of,
        distance=(members.snapshot_month - as_of).abs(),
    ).sort_values(["msno", "after", "distance"])
    m = m.drop_duplicates("msno").set_index("msno")
    out = pd.DataFrame(index=m.index)
    out["age"] = m.bd.where((m.bd > 0) & (m.bd < 100))
    out["gender"] = m.gender.replace("", None)
    out["city"] = _as_text(m.city).replace("", None)
    out["registered_via"] = _as_text(m.registered_via).replace("", None)
    reg = m.registration_init_time
    out["registration_tenure_days"] = (as_of - reg).dt.days.where(reg < as_of)
    return out


def build_member_features_pandas(
    members_df: pd.DataFrame,
    transactions_df: pd.DataFrame,
    user_logs_df: pd.DataFrame,
    as_of: dt.date,
    population: pd.Series | None = None,
) -> pd.DataFrame:
    """Features as of `as_of` for `population` (msno values; None: every member with a
    transaction before as_of), sorted by msno: KEY_COLUMNS + FEATURE_COLUMNS."""
    as_of = pd.Timestamp(as_of)
    tx = _transaction_features(transactions_df, as_of)
    msno = tx.index if population is None else pd.Index(pd.unique(population))
    out = pd.DataFrame(index=msno.sort_values().rename("msno"))
    out = out.join(tx).join(_log_features(user_logs_df, as_of)).join(_profile_features(members_df, as_of))
    zero_when_absent = [c for c in FEATURE_COLUMNS if c.startswith(("cancels_", "n_", "active_", "secs_", "unq_", "plays_"))
                        and c != "secs_trend_7_30"]
    out[zero_when_absent] = out[zero_when_absent].fillna(0)
    out["as_of"] = as_of
    numeric = [c for c in FEATURE_COLUMNS if c not in CATEGORICAL_COLUMNS]
    out[numeric] = out[numeric].astype("float64")
    out[CATEGORICAL_COLUMNS] = out[CATEGORICAL_COLUMNS].astype(object).where(out[CATEGORICAL_COLUMNS].notna(), None)
    return out.reset_index()[KEY_COLUMNS + FEATURE_COLUMNS]
