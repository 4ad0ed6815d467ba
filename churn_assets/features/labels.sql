-- Official WSDM Cup 2018 churn labels for one target month (see shared/kkbox_reference.md).
-- Parameters: $target_month (DATE, first of month). Placeholder: {transactions} (validated name).
--
-- Official order of a member's transactions ("asc"):
--   transaction_date ASC, plan signature DESC (string order: '99...' > '149...'),
--   renewals before cancellations, cancellations by expiry DESC, renewals by expiry ASC.
-- expire_key folds the last two rules into one number: -expiry for cancels, +expiry for renewals.
-- NOT MATERIALIZED: let each consumer push its own date filter into the scan instead of
-- materialising every row from M-1 on (twice as slow for an early target month).
WITH tx AS NOT MATERIALIZED (
    SELECT
        msno,
        transaction_date,
        membership_expire_date AS expire,
        coalesce(is_cancel, 0) AS is_cancel,
        concat(plan_list_price, payment_plan_days, payment_method_id) AS sig,
        CASE WHEN coalesce(is_cancel, 0) = 1 THEN -1 ELSE 1 END
            * (membership_expire_date - DATE '1970-01-01') AS expire_key
    FROM {transactions}
    WHERE transaction_date >= $target_month - INTERVAL 1 MONTH
      -- Nothing after the month that makes the labels final (the one holding M's last day
      -- + 29 days) can change is_churn: any renewal then is >= 30 days late. Bounding the read
      -- keeps the labels a function of the months the asset declares (M-1..M+2).
      AND transaction_date < date_trunc('month', $target_month + INTERVAL 1 MONTH - INTERVAL 1 DAY
                                                 + INTERVAL 29 DAY) + INTERVAL 1 MONTH
),
-- last row of the history window (month M-1) = first row in the reversed official order
history_last AS (
    SELECT msno, expire AS last_expire
    FROM tx
    WHERE transaction_date < $target_month
    QUALIFY row_number() OVER (
        PARTITION BY msno
        ORDER BY transaction_date DESC, sig ASC, is_cancel DESC, expire_key DESC
    ) = 1
),
candidates AS (
    SELECT msno, last_expire
    FROM history_last
    WHERE last_expire >= $target_month
      AND last_expire < $target_month + INTERVAL 1 MONTH
),
-- The walk ends on the day of the member's first renewal (non-cancel) dated from M on, so only
-- rows up to that day matter; pruning by it keeps the window small when many later months exist.
renewal_day AS (
    SELECT t.msno, min(t.transaction_date) AS renewal_date
    FROM tx t
    SEMI JOIN candidates c ON c.msno = t.msno
    WHERE t.transaction_date >= $target_month AND t.is_cancel = 0
    GROUP BY t.msno
),
-- The walk, set-based: along the official order keep a running count of renewals and the
-- running minimum of cancellation expiries. The first renewal (a renewal row whose count is 1)
-- ends the walk; the cancellations before it pulled the expiry back to
-- least(last_expire, that minimum) (the renewal row itself adds nothing to the minimum).
walk AS (
    SELECT
        t.msno,
        t.transaction_date,
        t.is_cancel,
        sum(1 - t.is_cancel) OVER w AS renewals_so_far,
        min(CASE WHEN t.is_cancel = 1 THEN t.expire END) OVER w AS min_cancel_expire
    FROM tx t
    JOIN renewal_day r ON r.msno = t.msno
    WHERE t.transaction_date >= $target_month AND t.transaction_date <= r.renewal_date
    WINDOW w AS (
        PARTITION BY t.msno
        ORDER BY t.transaction_date ASC, t.sig DESC, t.is_cancel ASC, t.expire_key ASC
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    )
),
first_renewal AS (
    SELECT msno, transaction_date, min_cancel_expire
    FROM walk
    WHERE is_cancel = 0 AND renewals_so_far = 1
)
SELECT
    c.msno,
    CAST($target_month AS DATE) AS target_month,
    c.last_expire,
    CAST(r.transaction_date - least(c.last_expire, coalesce(r.min_cancel_expire, c.last_expire))
         AS INTEGER) AS renewal_gap_days,
    -- no renewal at all (gap NULL) counts as churn
    CAST(coalesce(renewal_gap_days >= 30, TRUE) AS INTEGER) AS is_churn
FROM candidates c
LEFT JOIN first_renewal r USING (msno)
ORDER BY c.msno
