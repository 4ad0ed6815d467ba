"""The bad-input matrix for loading landing drops into raw.* (real DuckDB, files written here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from churn_assets.ingest.loading import (
    SOURCES,
    DropFileError,
    LoadResult,
    ensure_raw_schema,
    find_source_file,
    load_drop_file,
    read_raw_partition,
)

MARCH, APRIL = dt.date(2017, 3, 1), dt.date(2017, 4, 1)
TXN_HEADER = (
    "msno,payment_method_id,payment_plan_days,plan_list_price,actual_amount_paid,"
    "is_auto_renew,transaction_date,membership_expire_date,is_cancel"
)
LOG_HEADER = "msno,date,num_25,num_50,num_75,num_985,num_100,num_unq,total_secs"
MEM_HEADER = "msno,city,bd,gender,registered_via,registration_init_time"


def write(path: Path, *lines: str | bytes, newline_at_end: bool = True) -> Path:
    data = b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines)
    path.write_bytes(data + (b"\n" if newline_at_end and lines else b""))
    return path


def txn(msno: str, date: str = "20170305", expire: str = "20170405", **kw) -> str:
    v = dict(method="41", days="30", price="149", paid="149", auto="1", cancel="0") | kw
    return f"{msno},{v['method']},{v['days']},{v['price']},{v['paid']},{v['auto']},{date},{expire},{v['cancel']}"


def log(msno: str, date: str = "20170305", secs: str = "2400.5", n25: str = "3") -> str:
    return f"{msno},{date},{n25},1,0,1,20,22,{secs}"


@pytest.fixture
def con():
    c = duckdb.connect()
    ensure_raw_schema(c)
    yield c
    c.close()


def check_counts(r: LoadResult) -> None:
    assert r.rows_in == r.rows_loaded + r.rows_quarantined
    assert r.rows_quarantined == sum(r.quarantine_reasons.values())


def quarantine(con, source: str) -> list[tuple]:
    return con.execute(
        "SELECT partition, line_number, reason, raw_record FROM raw.quarantine WHERE source = ? "
        "ORDER BY partition, line_number",
        [source],
    ).fetchall()


def count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- clean loads and typing -------------------------------------------------------------


def test_clean_transactions_are_typed_and_partitioned(con, tmp_path):
    f = write(tmp_path / "transactions_logs.csv", TXN_HEADER, txn("a"), txn("b", "20170331", "20170430"))
    r = load_drop_file(con, "transactions", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (2, 2, 0)
    assert r.partition == "2017-03-01" and r.file_name == "transactions_logs.csv"
    row = con.execute("SELECT * FROM raw.transactions WHERE msno = 'b'").fetchone()
    assert row == ("b", 41, 30, 149, 149, 1, dt.date(2017, 3, 31), dt.date(2017, 4, 30), 0, MARCH)


def test_churn_labels_partition_is_target_month(con, tmp_path):
    f = write(tmp_path / "churn_logs.csv", "msno,is_churn", "a,0", "b,1", "c,2", "d,x", "e,", "f, 1")
    r = load_drop_file(con, "churn_labels", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (6, 3, 3)
    assert r.quarantine_reasons == {"is_churn not 0/1": 2, "missing is_churn": 1}
    assert [(q[1], q[2]) for q in quarantine(con, "churn_labels")] == [
        (4, "is_churn not 0/1"), (5, "is_churn not 0/1"), (6, "missing is_churn")]
    assert con.execute("SELECT msno, target_month, is_churn FROM raw.churn_labels ORDER BY msno").fetchall() == [
        ("a", MARCH, 0), ("b", MARCH, 1), ("f", MARCH, 1)]


def test_members_snapshot_keeps_known_quirks_and_replaces_whole_table(con, tmp_path):
    f = write(
        tmp_path / "members_v3.csv", MEM_HEADER,
        "a,1,0,,7,20150101",        # bd 0 and missing gender: loaded
        "b,5,1998,male,9,20190101",  # bd in the thousands and registration in the future: loaded
        "c,5,-7,female,3,20170231",  # impossible date: quarantined
        "d,1,25,female,4,",          # missing registration date: loaded as NULL
    )
    r = load_drop_file(con, "members", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (4, 3, 1)
    assert quarantine(con, "members") == [("2017-03-01", 4, "invalid date registration_init_time",
                                           "c,5,-7,female,3,20170231")]
    rows = con.execute("SELECT msno, bd, gender, registration_init_time, snapshot_month FROM raw.members "
                       "ORDER BY msno").fetchall()
    assert rows == [("a", 0, None, dt.date(2015, 1, 1), MARCH), ("b", 1998, "male", dt.date(2019, 1, 1), MARCH),
                    ("d", 25, "female", None, MARCH)]

    g = write(tmp_path / "members_profile.csv", MEM_HEADER, "z,1,30,male,7,20160101")
    r2 = load_drop_file(con, "members", g, APRIL)
    assert r2.rows_loaded == 1 and r2.skipped is None
    assert con.execute("SELECT msno, snapshot_month FROM raw.members").fetchall() == [("z", APRIL)]
    assert quarantine(con, "members") == []  # the old snapshot's rejects went with it

    # An older snapshot re-ingested later (backfill order) must not replace the newer one.
    r3 = load_drop_file(con, "members", f, MARCH)
    assert r3.skipped and "2017-04-01" in r3.skipped
    check_counts(r3)
    assert con.execute("SELECT msno, snapshot_month FROM raw.members").fetchall() == [("z", APRIL)]


# --- file-level errors: clear message, nothing written -----------------------------------


def _seed_march(con, tmp_path) -> None:
    f = write(tmp_path / "seed.csv", TXN_HEADER, txn("keep"))
    load_drop_file(con, "transactions", f, MARCH)


def test_missing_column_is_a_clear_error_and_writes_nothing(con, tmp_path):
    _seed_march(con, tmp_path)
    header = TXN_HEADER.replace(",is_cancel", "")
    f = write(tmp_path / "transactions_logs.csv", header, txn("a").rsplit(",", 1)[0])
    with pytest.raises(DropFileError) as e:
        load_drop_file(con, "transactions", f, MARCH)
    assert "is_cancel" in str(e.value) and "transactions_logs.csv" in str(e.value) and "line 1" in str(e.value)
    assert con.execute("SELECT msno FROM raw.transactions").fetchall() == [("keep",)]


def test_empty_file_is_an_error_header_only_is_not(con, tmp_path):
    _seed_march(con, tmp_path)
    empty = tmp_path / "userlogs.csv"
    empty.write_bytes(b"")
    with pytest.raises(DropFileError, match="empty file"):
        load_drop_file(con, "user_logs", empty, MARCH)
    with pytest.raises(DropFileError, match="empty file"):
        load_drop_file(con, "transactions", empty, MARCH)
    assert count(con, "raw.transactions") == 1

    header_only = write(tmp_path / "transactions_logs.csv", TXN_HEADER)
    r = load_drop_file(con, "transactions", header_only, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (0, 0, 0)
    assert count(con, "raw.transactions") == 0  # the re-delivered (empty) drop replaced the partition


@pytest.mark.parametrize("sep", [";", "\t"])
def test_wrong_delimiter_is_a_clear_error(con, tmp_path, sep):
    f = write(tmp_path / "userlogs.csv", LOG_HEADER.replace(",", sep), log("a").replace(",", sep))
    with pytest.raises(DropFileError, match="wrong delimiter"):
        load_drop_file(con, "user_logs", f, MARCH)
    assert count(con, "raw.user_logs") == 0 and count(con, "raw.quarantine") == 0


def test_failure_inside_the_transaction_rolls_back(con, tmp_path):
    _seed_march(con, tmp_path)

    class FailingQuarantineInsert:  # the last write of the transaction fails
        def __init__(self, inner):
            self.inner = inner

        def execute(self, sql, params=None):
            if sql.startswith("INSERT INTO raw.quarantine"):
                raise duckdb.IOException("disk full")
            return self.inner.execute(sql, params) if params is not None else self.inner.execute(sql)

    f = write(tmp_path / "t.csv", TXN_HEADER, txn("new"), "bad,row")
    with pytest.raises(duckdb.IOException):
        load_drop_file(FailingQuarantineInsert(con), "transactions", f, MARCH)
    assert con.execute("SELECT msno FROM raw.transactions").fetchall() == [("keep",)]
    assert count(con, "raw.quarantine") == 0
    assert not con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()


# --- row-level problems: quarantined with reason and line --------------------------------


def test_extra_column_is_ignored_and_reported(con, tmp_path):
    f = write(tmp_path / "userlogs.csv", LOG_HEADER + ",device", log("a") + ",ios", log("b") + ",web")
    r = load_drop_file(con, "user_logs", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.extra_columns) == (2, 2, ["device"])
    assert [c for c in read_raw_partition(con, "user_logs", MARCH).columns if c == "device"] == []


def test_wrong_types_and_bad_dates_are_quarantined_with_lines(con, tmp_path):
    f = write(
        tmp_path / "transactions_logs.csv", TXN_HEADER,
        txn("ok1"),
        txn("t_days", days="thirty"),                   # line 3
        txn("t_frac", price="149.5"),                    # line 4: would round silently
        txn("t_feb31", date="20170231"),                 # line 5: impossible date
        txn("t_old", expire="19991231"),                 # line 6: year < 2004
        txn("t_future", expire="20350101"),              # line 7: year > 2030
        txn("t_april", date="20170401", expire="20170501"),  # line 8: outside the drop month
        txn("", date="20170306"),                        # line 9: missing key
        txn("t_short_date", date="2017035"),             # line 10
        txn("ok2", date="20170310", expire="20170308", cancel="1"),  # expiry before txn: a known quirk
        txn("t_nodate", date=""),                        # line 12
    )
    r = load_drop_file(con, "transactions", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (11, 2, 9)
    assert [(q[1], q[2]) for q in quarantine(con, "transactions")] == [
        (3, "non-integer payment_plan_days"),
        (4, "non-integer plan_list_price"),
        (5, "invalid date transaction_date"),
        (6, "date out of range membership_expire_date"),
        (7, "date out of range membership_expire_date"),
        (8, "transaction_date outside drop month 2017-03"),
        (9, "missing msno"),
        (10, "invalid date transaction_date"),
        (12, "missing transaction_date"),
    ]
    assert quarantine(con, "transactions")[0][3] == txn("t_days", days="thirty")
    assert sorted(m for (m,) in con.execute("SELECT msno FROM raw.transactions").fetchall()) == ["ok1", "ok2"]
    exp, date = con.execute("SELECT membership_expire_date, transaction_date FROM raw.transactions "
                            "WHERE msno = 'ok2'").fetchone()
    assert exp < date


def test_negative_and_sentinel_total_secs_are_loaded(con, tmp_path):
    f = write(tmp_path / "user_logs_v2.csv", LOG_HEADER,
              log("a", secs="-9223372036854775.808"), log("b", secs="9223372036854775.807"),
              log("c", secs="-3.5"), log("d", secs="1e3"), log("e", secs="abc"), log("f", secs="nan"))
    r = load_drop_file(con, "user_logs", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (6, 4, 2)
    assert r.quarantine_reasons == {"non-numeric total_secs": 2}
    secs = dict(con.execute("SELECT msno, total_secs FROM raw.user_logs").fetchall())
    assert secs["a"] < -9e15 and secs["b"] > 9e15 and secs["c"] == -3.5 and secs["d"] == 1000.0


def test_duplicate_rows_keep_the_first(con, tmp_path):
    f = write(tmp_path / "userlogs.csv", LOG_HEADER,
              log("a"), log("b"), log("a"), log("a", secs="10"), log("a"), log("b"))
    r = load_drop_file(con, "user_logs", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (6, 3, 3)
    assert [(q[1], q[2]) for q in quarantine(con, "user_logs")] == [
        (4, "duplicate row"), (6, "duplicate row"), (7, "duplicate row")]
    assert quarantine(con, "user_logs")[0][3] == log("a")
    # A same-key row with other values is not a duplicate: it is loaded.
    assert count(con, "raw.user_logs") == 3


def test_malformed_lines_non_utf8_and_truncated_last_line(con, tmp_path):
    f = write(
        tmp_path / "userlogs.csv", LOG_HEADER.encode(),
        log("a").encode(),
        log("b").encode().replace(b"2400.5", b"24\xff\xfe00"),  # line 3: invalid UTF-8
        log("c").encode() + b",extra",                            # line 4: too many fields
        log("e", date="20170231").encode(),                       # line 5: parsed, bad date
        log("f").encode(),                                        # line 6
        b"g,2017030",                                             # line 7: truncated last line
        newline_at_end=False,
    )
    r = load_drop_file(con, "user_logs", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (6, 2, 4)
    assert quarantine(con, "user_logs") == [
        ("2017-03-01", 3, "malformed line: invalid encoding", "b,20170305,3,1,0,1,20,22,24??00"),
        ("2017-03-01", 4, "malformed line: too many columns", log("c") + ",extra"),
        ("2017-03-01", 5, "invalid date date", log("e", date="20170231")),  # line derived across rejects
        ("2017-03-01", 7, "malformed line: missing columns", "g,2017030"),
    ]
    assert sorted(m for (m,) in con.execute("SELECT msno FROM raw.user_logs").fetchall()) == ["a", "f"]


def test_unterminated_quote_is_one_rejected_record(con, tmp_path):
    # A quote opens a field that may span lines (CSV rules): a file cut inside a quoted
    # field ends in one rejected record holding the rest of the file, nothing is lost silently.
    f = write(tmp_path / "userlogs.csv", LOG_HEADER, log("a"), '"' + log("b"), log("c"), newline_at_end=False)
    r = load_drop_file(con, "user_logs", f, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (2, 1, 1)
    [(_, line, reason, record)] = quarantine(con, "user_logs")
    assert (line, reason) == (3, "malformed line: unquoted value")
    assert record == '"' + log("b") + "\n" + log("c")


def test_msno_absent_from_members_is_loaded(con, tmp_path):
    load_drop_file(con, "members", write(tmp_path / "m.csv", MEM_HEADER, "a,1,20,male,7,20150101"), MARCH)
    r = load_drop_file(con, "transactions", write(tmp_path / "t.csv", TXN_HEADER, txn("a"), txn("stranger")),
                       MARCH)
    check_counts(r)
    assert r.rows_loaded == 2
    assert con.execute("SELECT count(*) FROM raw.transactions t ANTI JOIN raw.members m USING (msno)"
                       ).fetchone()[0] == 1


# --- partitions: re-delivery and idempotence ---------------------------------------------


def test_redelivered_drop_replaces_exactly_its_partition(con, tmp_path):
    march = write(tmp_path / "m1.csv", LOG_HEADER, log("a"), log("b"), log("x", date="20170231"))
    april = write(tmp_path / "a.csv", LOG_HEADER, log("a", date="20170402"), log("z", date="20170999"))
    load_drop_file(con, "user_logs", march, MARCH)
    load_drop_file(con, "user_logs", april, APRIL)
    april_before = read_raw_partition(con, "user_logs", APRIL)
    april_q = [q for q in quarantine(con, "user_logs") if q[0] == "2017-04-01"]

    corrected = write(tmp_path / "m2.csv", LOG_HEADER, log("a", secs="1.0"), log("c"), log("d"), log("d"))
    r = load_drop_file(con, "user_logs", corrected, MARCH)
    check_counts(r)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (4, 3, 1)
    assert con.execute("SELECT msno, total_secs FROM raw.user_logs WHERE partition_month = ? ORDER BY msno",
                       [MARCH]).fetchall() == [("a", 1.0), ("c", 2400.5), ("d", 2400.5)]
    assert read_raw_partition(con, "user_logs", APRIL).equals(april_before)
    q = quarantine(con, "user_logs")
    assert [x for x in q if x[0] == "2017-04-01"] == april_q and len(april_q) == 1
    assert [(x[0], x[1], x[2]) for x in q if x[0] == "2017-03-01"] == [("2017-03-01", 5, "duplicate row")]


@pytest.mark.parametrize("source,header,rows", [
    ("transactions", TXN_HEADER, [txn("a"), txn("a"), txn("b", date="20170231"), txn("c")]),
    ("user_logs", LOG_HEADER, [log("a"), log("b", secs="-1"), b"bad\xff,line", log("a")]),
])
def test_reload_is_idempotent(con, tmp_path, source, header, rows):
    f = write(tmp_path / SOURCES[source].file_names[0], header, *rows)
    first = load_drop_file(con, source, f, MARCH)
    snap = lambda: (  # noqa: E731
        con.execute(f"SELECT * FROM {SOURCES[source].table} ORDER BY ALL").fetchall(),
        con.execute("SELECT * FROM raw.quarantine ORDER BY ALL").fetchall(),
    )
    before = snap()
    second = load_drop_file(con, source, f, MARCH)
    check_counts(second)
    assert snap() == before
    assert (first.rows_in, first.rows_loaded, first.quarantine_reasons) == (
        second.rows_in, second.rows_loaded, second.quarantine_reasons)
    assert first.rows_quarantined == 2


# --- lookup helpers --------------------------------------------------------------------


def test_find_source_file_accepts_seed_and_public_names(tmp_path):
    drop = tmp_path / "landing" / "2017-03"
    drop.mkdir(parents=True)
    for name in ("members_v3.csv", "transactions_v2.csv", "user_logs.csv", "train_v2.csv"):
        (drop / name).write_text("x\n")
    assert find_source_file(drop, "members").name == "members_v3.csv"
    assert find_source_file(drop, "transactions").name == "transactions_v2.csv"
    assert find_source_file(drop, "user_logs").name == "user_logs.csv"
    assert find_source_file(drop, "churn_labels").name == "train_v2.csv"
    (drop / "transactions_logs.csv").write_text("x\n")  # seed spelling wins
    assert find_source_file(drop, "transactions").name == "transactions_logs.csv"
    assert find_source_file(tmp_path / "nope", "members") is None
    with pytest.raises(ValueError, match="unknown source"):
        find_source_file(drop, "payments")


def test_read_raw_partition_and_sample(con, tmp_path):
    f = write(tmp_path / "u.csv", LOG_HEADER, *[log(f"m{i}") for i in range(50)])
    load_drop_file(con, "user_logs", f, MARCH)
    assert len(read_raw_partition(con, "user_logs", MARCH)) == 50
    assert len(read_raw_partition(con, "user_logs", dt.date(2017, 3, 17))) == 50  # any day of the month
    assert len(read_raw_partition(con, "user_logs", MARCH, sample_rows=10)) == 10
    assert read_raw_partition(con, "user_logs", APRIL).empty
