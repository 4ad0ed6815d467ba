-- Members whose membership, as known from transactions dated before $start, expires in
-- [$start, $end): the weekly scoring population. Placeholders (in braces): raw schema and
-- the ORDER BY of latest_first.sql. An ordered first() is a plain aggregate, several times
-- cheaper than a row_number() window over all transactions.
SELECT msno, membership_expire_date
FROM (
    SELECT msno, first(membership_expire_date ORDER BY {latest_first}) AS membership_expire_date
    FROM {raw}.transactions
    WHERE transaction_date < $start
    GROUP BY msno
)
WHERE membership_expire_date >= $start AND membership_expire_date < $end
ORDER BY msno
