-- Members whose membership, as known from transactions dated before $start, expires in
-- [$start, $end): the weekly scoring population. Placeholders: raw schema, latest_first.sql.
SELECT msno, membership_expire_date
FROM {raw}.transactions
WHERE transaction_date < $start
QUALIFY row_number() OVER (PARTITION BY msno ORDER BY {latest_first}) = 1
    AND membership_expire_date >= $start
    AND membership_expire_date < $end
ORDER BY msno
