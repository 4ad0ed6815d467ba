-- Point-in-time member features (contract: features/feature_spec.py).
-- Parameter: $as_of (DATE). Every source row read is dated strictly before $as_of.
-- Placeholders (in braces) filled by member_features.py, identifiers validated:
--   raw          raw schema
--   population   query giving the distinct msno to return
--   restrict     "" or a semi-join of the sources on the population (cheaper than
--                aggregating every member when only a few are asked for)
--   latest_first the ORDER BY of latest_first.sql
--   numeric_casts the FEATURE_COLUMNS list, numeric ones cast to DOUBLE
-- Each source is scanned once and reduced to one row per msno before the joins.
WITH
-- Transactions in the reversed official order of the churn rule (latest_first.sql), so
-- recency_rank = 1 is "the latest transaction" and lead() is the previous one in time.
-- This window is the query's only per-member sort and its largest cost (~40 % of CPU).
txn AS (
    SELECT
        msno,
        transaction_date,
        membership_expire_date,
        payment_method_id,
        payment_plan_days,
        plan_list_price,
        actual_amount_paid,
        is_auto_renew,
        coalesce(is_cancel, 0) AS is_cancel,
        row_number() OVER w AS recency_rank,
        lead(transaction_date) OVER w AS prev_date,
        lead(plan_list_price) OVER w AS prev_price,
        lead(payment_plan_days) OVER w AS prev_days,
        lead(payment_method_id) OVER w AS prev_method
    FROM {raw}.transactions
    WHERE transaction_date < $as_of {restrict}
    WINDOW w AS (PARTITION BY msno ORDER BY {latest_first})
),
txn_agg AS (
    SELECT
        msno,
        any_value(transaction_date) FILTER (recency_rank = 1) AS last_date,
        any_value(membership_expire_date) FILTER (recency_rank = 1) AS last_expire,
        any_value(payment_plan_days) FILTER (recency_rank = 1) AS last_plan_days,
        any_value(plan_list_price) FILTER (recency_rank = 1) AS last_list_price,
        any_value(actual_amount_paid) FILTER (recency_rank = 1) AS last_amount_paid,
        any_value(is_auto_renew) FILTER (recency_rank = 1) AS last_is_auto_renew,
        any_value(is_cancel) FILTER (recency_rank = 1) AS last_is_cancel,
        any_value(payment_method_id) FILTER (recency_rank = 1) AS last_payment_method,
        -- counts read only the last 90 days (see feature_spec.py: nothing may depend on
        -- how far back the data goes); the latest transaction above uses all history
        count(*) FILTER (is_cancel = 1 AND transaction_date >= $as_of - 30) AS cancels_30d,
        count(*) FILTER (is_cancel = 1 AND transaction_date >= $as_of - 60) AS cancels_60d,
        count(*) FILTER (is_cancel = 1 AND transaction_date >= $as_of - 90) AS cancels_90d,
        count(*) FILTER (transaction_date >= $as_of - 90) AS n_txn_90d,
        avg(is_auto_renew) FILTER (transaction_date >= $as_of - 90) AS auto_renew_share_90d,
        -- a change needs both transactions of the pair inside the window
        count(*) FILTER (prev_date >= $as_of - 90
                         AND (plan_list_price IS DISTINCT FROM prev_price
                              OR payment_plan_days IS DISTINCT FROM prev_days
                              OR payment_method_id IS DISTINCT FROM prev_method)
        ) AS n_plan_changes_90d
    FROM txn
    GROUP BY msno
),
population AS (
    {population}
),
-- Listening: only the 90-day window is read. Days are counted as distinct dates through
-- two 64-bit day masks (bit k = listened k+1 days before as_of), which stays exact if a
-- day is delivered twice, without a COUNT(DISTINCT) per window. Consequence of the window:
-- days_since_last_log is NULL when nothing was heard in those 90 days.
logs AS (
    SELECT
        msno,
        CAST($as_of - date AS INTEGER) - 1 AS k,
        -- DECIMAL sums are exact, so a rebuild gives the same bits whatever order
        -- DuckDB's threads add the rows in (DOUBLE sums differ in the last bits).
        CASE WHEN total_secs BETWEEN 0 AND 86400 THEN CAST(total_secs AS DECIMAL(18, 9)) END AS secs,
        num_unq,
        coalesce(num_25, 0) + coalesce(num_50, 0) + coalesce(num_75, 0)
            + coalesce(num_985, 0) + coalesce(num_100, 0) AS plays,
        coalesce(num_100, 0) AS num_100
    FROM {raw}.user_logs
    WHERE date >= $as_of - 90 AND date < $as_of {restrict}
),
log_agg AS (
    SELECT
        msno,
        min(k) AS last_k,
        bit_or(CASE WHEN k < 64 THEN 1::UBIGINT << k END) AS days_lo,
        bit_or(CASE WHEN k >= 64 THEN 1::UBIGINT << (k - 64) END) AS days_hi,
        CAST(sum(secs) FILTER (k < 7) AS DOUBLE) AS secs_7d,
        CAST(sum(secs) FILTER (k < 14) AS DOUBLE) AS secs_14d,
        CAST(sum(secs) FILTER (k < 30) AS DOUBLE) AS secs_30d,
        CAST(sum(secs) AS DOUBLE) AS secs_90d,
        sum(num_unq) FILTER (k < 30) AS unq_30d,
        sum(plays) FILTER (k < 30) AS plays_30d,
        sum(num_100) FILTER (k < 30) AS num_100_30d
    FROM logs
    GROUP BY msno
),
-- One profile row per member: the latest snapshot before as_of, else the earliest one
-- (profiles are near static; a registration after as_of is nulled below).
profile AS (
    SELECT msno, city, bd, gender, registered_via, registration_init_time
    FROM {raw}.members
    WHERE TRUE {restrict}
    QUALIFY row_number() OVER (
        PARTITION BY msno ORDER BY snapshot_month >= $as_of, abs(snapshot_month - $as_of)
    ) = 1
),
features AS (
    SELECT
        p.msno,
        t.last_expire,
        t.last_plan_days,
        t.last_list_price,
        t.last_amount_paid,
        CASE WHEN t.last_list_price = 0 THEN 0
             ELSE 1 - t.last_amount_paid / t.last_list_price END AS last_discount_share,
        t.last_is_auto_renew,
        t.last_is_cancel,
        CAST(t.last_payment_method AS VARCHAR) AS last_payment_method,
        t.last_expire - $as_of AS days_to_expiry,
        $as_of - t.last_date AS days_since_last_txn,
        coalesce(t.cancels_30d, 0) AS cancels_30d,
        coalesce(t.cancels_60d, 0) AS cancels_60d,
        coalesce(t.cancels_90d, 0) AS cancels_90d,
        coalesce(t.n_txn_90d, 0) AS n_txn_90d,
        t.auto_renew_share_90d,
        coalesce(t.n_plan_changes_90d, 0) AS n_plan_changes_90d,
        bit_count(coalesce(l.days_lo, 0) & 127) AS active_days_7d,
        bit_count(coalesce(l.days_lo, 0) & 1073741823) AS active_days_30d,
        bit_count(coalesce(l.days_lo, 0)) + bit_count(coalesce(l.days_hi, 0)) AS active_days_90d,
        coalesce(l.secs_7d, 0) AS secs_7d,
        coalesce(l.secs_14d, 0) AS secs_14d,
        coalesce(l.secs_30d, 0) AS secs_30d,
        coalesce(l.secs_90d, 0) AS secs_90d,
        coalesce(l.unq_30d, 0) AS unq_30d,
        coalesce(l.plays_30d, 0) AS plays_30d,
        l.num_100_30d / nullif(l.plays_30d, 0) AS completion_share_30d,
        (coalesce(l.secs_7d, 0) / 7) / nullif(l.secs_30d / 30, 0) AS secs_trend_7_30,
        l.last_k + 1 AS days_since_last_log,
        CASE WHEN m.bd > 0 AND m.bd < 100 THEN m.bd END AS age,
        nullif(m.gender, '') AS gender,
        CAST(m.city AS VARCHAR) AS city,
        CAST(m.registered_via AS VARCHAR) AS registered_via,
        CASE WHEN m.registration_init_time < $as_of
             THEN $as_of - m.registration_init_time END AS registration_tenure_days
    FROM population p
    LEFT JOIN txn_agg t USING (msno)
    LEFT JOIN log_agg l USING (msno)
    LEFT JOIN profile m USING (msno)
)
-- Numeric features are all DOUBLE: one stable dtype whether or not a column holds NULLs.
SELECT
    msno,
    CAST($as_of AS DATE) AS as_of,
    last_expire AS membership_expire_date,
    {numeric_casts}
FROM features
ORDER BY msno
