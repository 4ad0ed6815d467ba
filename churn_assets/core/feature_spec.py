"""The member feature contract shared by training, scoring, drift and reasons.

`build_member_features` returns `msno, as_of, membership_expire_date` followed by
FEATURE_COLUMNS in this order. Categorical features are VARCHAR in DuckDB and
pandas `category` only inside the model (categories fixed at training time).
All windows are over rows dated strictly before `as_of` and reach back at most 90 days:
no feature depends on how much history the data set holds (a member's first transaction
in the data is an artefact of where the data starts, so there is no "tenure from
transactions"; registration_tenure_days gives tenure), which keeps training months and
later scoring weeks comparable for the model and the drift monitor.
"""

# name -> description a person can read (used in docs and for reason wording)
FEATURES: dict[str, str] = {
    # transactions: the member's latest transaction before as_of (official ordering, all
    # history), then counts over the last 30/60/90 days
    "last_plan_days": "plan length of the latest transaction (days)",
    "last_list_price": "list price of the latest transaction",
    "last_amount_paid": "amount actually paid on the latest transaction",
    "last_discount_share": "1 - paid / list price on the latest transaction (0 when list price is 0)",
    "last_is_auto_renew": "latest transaction is on auto-renew (0/1)",
    "last_is_cancel": "latest transaction is a cancellation (0/1)",
    "last_payment_method": "payment method of the latest transaction (categorical)",
    "days_to_expiry": "membership_expire_date - as_of (days)",
    "days_since_last_txn": "as_of - latest transaction date (days)",
    "cancels_30d": "cancellations in the 30 days before as_of",
    "cancels_60d": "cancellations in the 60 days before as_of",
    "cancels_90d": "cancellations in the 90 days before as_of",
    "n_txn_90d": "transactions in the 90 days before as_of",
    "auto_renew_share_90d": "share of transactions on auto-renew, 90 days (NULL when none)",
    "n_plan_changes_90d": "changes of plan signature (price, days, method) between consecutive transactions, both in the 90 days",
    # listening logs (total_secs outside 0..86400 neutralised to NULL, not summed)
    "active_days_7d": "days with listening in the last 7 days",
    "active_days_30d": "days with listening in the last 30 days",
    "active_days_90d": "days with listening in the last 90 days",
    "secs_7d": "seconds listened in the last 7 days",
    "secs_14d": "seconds listened in the last 14 days",
    "secs_30d": "seconds listened in the last 30 days",
    "secs_90d": "seconds listened in the last 90 days",
    "unq_30d": "unique songs summed over the last 30 days",
    "plays_30d": "plays (num_25+num_50+num_75+num_985+num_100) in the last 30 days",
    "completion_share_30d": "num_100 / plays over the last 30 days",
    "secs_trend_7_30": "daily seconds of the last 7 days / daily seconds of the last 30 days (1 = steady)",
    "days_since_last_log": "as_of - latest listening date (days); NULL when never listened",
    # members profile
    "age": "bd when 0 < bd < 100, else NULL",
    "gender": "male / female / NULL (categorical)",
    "city": "city code (categorical)",
    "registered_via": "sign-up channel (categorical)",
    "registration_tenure_days": "as_of - registration_init_time (days); NULL when unknown or in the future",
}

FEATURE_COLUMNS: list[str] = list(FEATURES)
CATEGORICAL_COLUMNS: list[str] = ["last_payment_method", "gender", "city", "registered_via"]
NUMERIC_COLUMNS: list[str] = [c for c in FEATURE_COLUMNS if c not in CATEGORICAL_COLUMNS]
KEY_COLUMNS: list[str] = ["msno", "as_of", "membership_expire_date"]
TARGET = "is_churn"  # the label the model learns (features.labels.is_churn)
