-- ORDER BY list that sorts one member's transactions latest first: the reverse of the
-- official churn-rule order (kkbox_reference.md): transaction_date, then plan signature
-- (price, days, method concatenated as strings) descending, renewals before cancellations,
-- cancellations by expiry descending, renewals by expiry ascending. The expiry key folds the
-- last two rules into one number (as labels.sql does); amount and auto-renew only break
-- full ties so the pick is deterministic.
transaction_date DESC,
concat(plan_list_price, payment_plan_days, payment_method_id) ASC,
coalesce(is_cancel, 0) DESC,
CASE WHEN coalesce(is_cancel, 0) = 1 THEN -1 ELSE 1 END
    * (membership_expire_date - DATE '1970-01-01') DESC,
coalesce(actual_amount_paid, -1) DESC,
coalesce(is_auto_renew, -1) DESC
