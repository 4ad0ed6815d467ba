-- Monthly churn KPI for one month (one row). Parameter: $month (DATE, first of month).
-- Placeholders: {transactions} (raw.transactions columns), {labels} (features.labels columns).
WITH bounds AS (
    SELECT CAST($month AS DATE) AS month_start,
           CAST($month + INTERVAL 1 MONTH AS DATE) AS month_end  -- exclusive
),
-- a membership is active at some point in the month when a transaction dated before the
-- month's end expires on or after its start, or is dated inside the month
active AS (
    SELECT count(DISTINCT t.msno) AS active_members
    FROM {transactions} t, bounds b
    WHERE t.transaction_date < b.month_end
      AND (t.membership_expire_date >= b.month_start OR t.transaction_date >= b.month_start)
),
first_seen AS (
    SELECT msno, min(transaction_date) AS first_date
    FROM {transactions}
    WHERE transaction_date < (SELECT month_end FROM bounds)
    GROUP BY msno
),
new AS (
    SELECT count(*) AS new_members
    FROM first_seen, bounds b
    WHERE first_date >= b.month_start
),
outcome AS (
    SELECT count(*) FILTER (WHERE is_churn = 0) AS renewed,
           count(*) FILTER (WHERE is_churn = 1) AS churned
    FROM {labels}
    WHERE target_month = $month
)
SELECT
    b.month_start AS month,
    a.active_members,
    n.new_members,
    o.renewed,
    o.churned,
    o.churned / nullif(a.active_members, 0) AS churn_rate
FROM bounds b, active a, new n, outcome o
