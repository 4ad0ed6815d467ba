-- Typed raw tables. Every raw partitioned table carries `partition_month`
-- (the first day of the drop month) so a re-delivered drop replaces exactly its rows.
CREATE SCHEMA IF NOT EXISTS raw;

CREATE TABLE IF NOT EXISTS raw.members (
    msno VARCHAR NOT NULL,
    city INTEGER,
    bd INTEGER,
    gender VARCHAR,                 -- 'male' / 'female' / NULL (missing on ~65 %)
    registered_via INTEGER,
    registration_init_time DATE,
    snapshot_month DATE NOT NULL    -- drop the snapshot came from
);

CREATE TABLE IF NOT EXISTS raw.transactions (
    msno VARCHAR NOT NULL,
    payment_method_id INTEGER,
    payment_plan_days INTEGER,
    plan_list_price INTEGER,
    actual_amount_paid INTEGER,
    is_auto_renew INTEGER,          -- 0/1, kept as in the source
    transaction_date DATE NOT NULL,
    membership_expire_date DATE NOT NULL,
    is_cancel INTEGER,              -- 0/1
    partition_month DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS raw.user_logs (
    msno VARCHAR NOT NULL,
    date DATE NOT NULL,
    num_25 INTEGER,
    num_50 INTEGER,
    num_75 INTEGER,
    num_985 INTEGER,
    num_100 INTEGER,
    num_unq INTEGER,
    total_secs DOUBLE,              -- raw, sentinels (+/-9.22e15) kept; features neutralise them
    partition_month DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS raw.churn_labels (
    msno VARCHAR NOT NULL,
    target_month DATE NOT NULL,
    is_churn INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS raw.quarantine (
    source VARCHAR NOT NULL,        -- members / transactions / user_logs / churn_labels
    partition VARCHAR NOT NULL,     -- partition key, e.g. 2017-03-01
    file_name VARCHAR,
    line_number BIGINT,             -- 1-based line in the file (header = line 1)
    reason VARCHAR NOT NULL,
    raw_record VARCHAR
);
