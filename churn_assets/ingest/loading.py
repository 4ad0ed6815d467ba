"""Load one landing drop file into its typed raw table (pure DuckDB, no Dagster).

A drop file is parsed by DuckDB's CSV reader with every column as VARCHAR, so a bad
value never aborts the load: lines the parser cannot read (wrong field count,
unterminated quote, invalid UTF-8) come back through DuckDB's reject tables, and
values that do not type-check are found by SQL. Both go to `raw.quarantine` with
their 1-based file line (header = line 1) and a reason; the rest is typed and
inserted. The partition is replaced in one transaction, so a re-delivered drop
replaces exactly its rows and a failure leaves the previous contents untouched.

Line numbers of value-level rejects are derived from the row's position among the
parsed rows plus the parser's rejected lines; blank lines (skipped by DuckDB) and
quoted fields spanning lines would shift them.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from churn_assets.sql import quoted, transaction

Kind = Literal["key", "int", "double", "date", "flag01", "text"]

# Dates of transactions and logs outside these years are corrupt, not history.
MIN_YEAR, MAX_YEAR = 2004, 2030
_INT_PATTERN = r"\s*[+-]?[0-9]+\s*"  # TRY_CAST alone would round '1.5' to 2


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False  # NULL / empty goes to quarantine
    range_checked: bool = False  # year must lie in MIN_YEAR..MAX_YEAR
    in_drop_month: bool = False  # must fall in the drop month


@dataclass(frozen=True)
class Source:
    name: str
    table: str
    file_names: tuple[str, ...]  # seed spelling first, then the public ones
    columns: tuple[Column, ...]
    partition_column: str  # column of the raw table that holds the drop month
    snapshot: bool = False  # True: the whole table is the latest snapshot

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


SOURCES: dict[str, Source] = {
    "members": Source(
        "members",
        "raw.members",
        ("members_profile.csv", "members_v3.csv", "members.csv"),
        (
            Column("msno", "key"),
            Column("city", "int"),
            Column("bd", "int"),  # out-of-range ages are a known quirk: loaded
            Column("gender", "text"),
            Column("registered_via", "int"),
            Column("registration_init_time", "date"),  # future dates are kept
        ),
        partition_column="snapshot_month",
        snapshot=True,
    ),
    "transactions": Source(
        "transactions",
        "raw.transactions",
        ("transactions_logs.csv", "transactions.csv", "transactions_v2.csv"),
        (
            Column("msno", "key"),
            Column("payment_method_id", "int"),
            Column("payment_plan_days", "int"),
            Column("plan_list_price", "int"),
            Column("actual_amount_paid", "int"),
            Column("is_auto_renew", "int"),
            Column("transaction_date", "date", required=True, range_checked=True, in_drop_month=True),
            Column("membership_expire_date", "date", required=True, range_checked=True),
            Column("is_cancel", "int"),
        ),
        partition_column="partition_month",
    ),
    "user_logs": Source(
        "user_logs",
        "raw.user_logs",
        ("userlogs.csv", "user_logs.csv", "user_logs_v2.csv"),
        (
            Column("msno", "key"),
            Column("date", "date", required=True, range_checked=True, in_drop_month=True),
            Column("num_25", "int"),
            Column("num_50", "int"),
            Column("num_75", "int"),
            Column("num_985", "int"),
            Column("num_100", "int"),
            Column("num_unq", "int"),
            Column("total_secs", "double"),  # sentinels kept; features neutralise them
        ),
        partition_column="partition_month",
    ),
    "churn_labels": Source(
        "churn_labels",
        "raw.churn_labels",
        ("churn_logs.csv", "train.csv", "train_v2.csv"),
        (Column("msno", "key"), Column("is_churn", "flag01", required=True)),
        partition_column="target_month",
    ),
}

_SCHEMA_SQL = Path(__file__).with_name("raw_schema.sql")


class DropFileError(ValueError):
    """A drop file that cannot be loaded at all (nothing was written)."""

    def __init__(self, path: Path, problem: str, line: int | None = None):
        where = f"{path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")
        self.path, self.problem, self.line = path, problem, line


@dataclass
class LoadResult:
    source: str
    partition: str  # 'YYYY-MM-01'
    file_name: str
    rows_in: int  # data lines in the file (header excluded)
    rows_loaded: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    skipped: str | None = None  # why nothing was written (older members snapshot)
    seconds: float = 0.0


def find_source_file(drop_dir: Path, source: str) -> Path | None:
    """The drop file of `source` in `drop_dir` (seed spelling preferred, case-insensitive)."""
    drop_dir = Path(drop_dir)
    if not drop_dir.is_dir():
        return None
    present = {p.name.lower(): p for p in drop_dir.iterdir() if p.is_file()}
    for name in _source(source).file_names:
        if name in present:
            return present[name]
    return None


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_SCHEMA_SQL.read_text())


def _source(source: str) -> Source:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[source]


def _read_header(path: Path, spec: Source) -> tuple[list[str], list[str]]:
    """Column names for DuckDB (file order) and the unknown extra columns, or DropFileError."""
    if not path.is_file():
        raise DropFileError(path, "file not found")
    if path.stat().st_size == 0:
        raise DropFileError(path, "empty file (0 bytes), expected a header line")
    with path.open("rb") as fh:
        first = fh.readline()
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if not text.strip():
        raise DropFileError(path, "header line is blank", line=1)
    header = [h.strip().lower() for h in next(csv.reader([text]))]
    if len(header) == 1 and (";" in header[0] or "\t" in header[0] or "|" in header[0]):
        raise DropFileError(path, f"wrong delimiter: expected ',' but header is {text[:80]!r}", line=1)
    missing = [c for c in spec.column_names if c not in header]
    if missing:
        raise DropFileError(
            path, f"missing required column(s) {', '.join(missing)} (header: {', '.join(header)})", line=1
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DropFileError(path, f"duplicate column(s) {', '.join(dupes)} in header", line=1)
    known = set(spec.column_names)
    extra = [h for h in header if h not in known]
    names = [h if h in known else f"extra_{i}" for i, h in enumerate(header)]
    return names, extra


def _typed_and_check(col: Column, month_label: str) -> tuple[str, str]:
    """SQL for the typed value (from raw text r__<col>) and for its quarantine reason (or NULL)."""
    raw, name = f'"r__{col.name}"', quoted(col.name)
    checks: list[str] = []
    if col.kind == "key":
        typed = raw
        checks.append(f"CASE WHEN nullif(trim({raw}), '') IS NULL THEN 'missing {col.name}' END")
    elif col.kind in ("int", "flag01"):
        typed = f"CASE WHEN regexp_full_match({raw}, '{_INT_PATTERN}') THEN TRY_CAST({raw} AS INTEGER) END"
        if col.kind == "flag01":
            checks.append(f"CASE WHEN {name} IS DISTINCT FROM 0 AND {name} IS DISTINCT FROM 1 "
                          f"THEN '{col.name} not 0/1' END")
        else:
            checks.append(f"CASE WHEN {raw} IS NOT NULL AND {name} IS NULL THEN 'non-integer {col.name}' END")
    elif col.kind == "double":
        typed = f"CASE WHEN isfinite(TRY_CAST({raw} AS DOUBLE)) THEN TRY_CAST({raw} AS DOUBLE) END"
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {name} IS NULL THEN 'non-numeric {col.name}' END")
    elif col.kind == "date":
        typed = f"CASE WHEN regexp_full_match({raw}, '[0-9]{{8}}') THEN try_strptime({raw}, '%Y%m%d')::DATE END"
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {name} IS NULL THEN 'invalid date {col.name}' END")
        if col.range_checked:
            checks.append(f"CASE WHEN year({name}) NOT BETWEEN {MIN_YEAR} AND {MAX_YEAR} "
                          f"THEN 'date out of range {col.name}' END")
        if col.in_drop_month:
            checks.append(f"CASE WHEN date_trunc('month', {name}) <> $month "
                          f"THEN '{col.name} outside drop month {month_label}' END")
    else:
        typed = raw
    if col.required:
        checks.insert(0, f"CASE WHEN {raw} IS NULL THEN 'missing {col.name}' END")
    return typed, ", ".join(checks) if checks else "NULL"


def _render(col: Column) -> str:
    """A typed value back as text (for the raw record of a duplicate, whose text is not kept)."""
    name = quoted(col.name)
    if col.kind == "date":
        return f"coalesce(strftime({name}, '%Y%m%d'), '')"
    return f"coalesce({name}::VARCHAR, '')"


def _checked_sql(spec: Source, stage: str, file_columns: list[str], month_label: str) -> str:
    """One pass over the CSV: type every column and find the first failing check per row.

    Also keeps `h`, a hash of the line's text, for the duplicate search. The result
    keeps file order (projections only), so its rowid is the row's position in the file.
    """
    cols = spec.columns
    columns = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in file_columns) + "}"
    raw_cols = ", ".join(f'{quoted(n)} AS "r__{n}"' for n in file_columns)
    parts = [_typed_and_check(c, month_label) for c in cols]
    typed = ", ".join(f"{t} AS {quoted(c.name)}" for c, (t, _) in zip(cols, parts))
    checks = ", ".join(chk for _, chk in parts)
    raw_list = ", ".join(f'"r__{n}"' for n in file_columns)
    record = " || ',' || ".join(f"coalesce(\"r__{n}\", '')" for n in file_columns)
    names = ", ".join(quoted(c.name) for c in cols)
    # All columns are read (not just the known ones) so that a bad byte anywhere rejects the line.
    return f"""
        CREATE TEMP TABLE {stage}_checked AS
        SELECT {names}, reason, hash({raw_list}) AS h,
               CASE WHEN reason IS NOT NULL THEN {record} END AS raw_record
        FROM (
            SELECT *, coalesce({checks}) AS reason
            FROM (
                SELECT *, {typed}
                FROM (
                    SELECT {raw_cols} FROM read_csv(
                        $path, auto_detect = false, header = true, delim = ',', quote = '"',
                        escape = '"', strict_mode = true, columns = {columns}, store_rejects = true,
                        rejects_table = '{stage}_rej', rejects_scan = '{stage}_scan'))))
    """


def _mark_duplicates_sql(spec: Source, stage: str) -> str:
    """Mark all but the first of identical lines as 'duplicate row'.

    Sorting the hashes finds the few candidate hashes cheaply (much faster than grouping
    every row); candidates are then compared on their values to rule out collisions.
    """
    names = ", ".join(quoted(c.name) for c in spec.columns)
    record = " || ',' || ".join(_render(c) for c in spec.columns)
    return f"""
        UPDATE {stage}_checked SET reason = 'duplicate row', raw_record = {record}
        WHERE rowid IN (
            WITH cand AS (
                SELECT DISTINCT h FROM (
                    SELECT h, lag(h) OVER (ORDER BY h) AS prev FROM {stage}_checked WHERE reason IS NULL)
                WHERE h = prev),
            ranked AS (
                SELECT rowid AS ord, row_number() OVER (PARTITION BY h, {names} ORDER BY rowid) AS rn
                FROM {stage}_checked WHERE reason IS NULL AND h IN (SELECT h FROM cand))
            SELECT ord FROM ranked WHERE rn > 1)
    """


def _quarantine_sql(stage: str) -> str:
    """Quarantine rows: parser rejects (with DuckDB's line) and failed checks (line derived).

    A parsed row k (1-based among parsed rows) sits on file line 1 + k + m, where m is the
    number of rejected lines before it; the i-th rejected line e_i has e_i - 1 - i parsed
    rows before it, so m = max{i : e_i - 1 - i < k} (an ASOF join).
    """
    return f"""
        WITH rej AS (
            SELECT line, first(error_type ORDER BY column_idx) AS error_type,
                   first(csv_line) AS csv_line
            FROM {stage}_rej GROUP BY line),
        rej_idx AS (SELECT line, row_number() OVER (ORDER BY line) AS i FROM rej),
        rej_map AS (SELECT line - 1 - i AS g, max(i) AS m FROM rej_idx GROUP BY g),
        bad AS (SELECT rowid + 1 AS k, reason, raw_record FROM {stage}_checked WHERE reason IS NOT NULL)
        SELECT 1 + b.k + coalesce(r.m, 0) AS line_number, b.reason, b.raw_record
        FROM bad b ASOF LEFT JOIN rej_map r ON b.k > r.g
        UNION ALL
        SELECT line, 'malformed line: ' || lower(error_type),
               rtrim(ltrim(csv_line, chr(10) || chr(13)), chr(10) || chr(13))
        FROM rej
    """


def load_drop_file(
    con: duckdb.DuckDBPyConnection, source: str, path: Path, partition_month: dt.date
) -> LoadResult:
    """Replace partition `partition_month` of `source` with the rows of `path`.

    Raises DropFileError (nothing written) when the file cannot be loaded at all.
    """
    started = time.perf_counter()
    spec = _source(source)
    path = Path(path)
    month = partition_month.replace(day=1)
    names, extra = _read_header(path, spec)
    ensure_raw_schema(con)

    stage = f"_stage_{uuid.uuid4().hex[:12]}"
    try:
        checked_sql = _checked_sql(spec, stage, names, month.strftime("%Y-%m"))
        params: dict = {"path": str(path)}
        if "$month" in checked_sql:
            params["month"] = month
        con.execute(checked_sql, params)
        con.execute(_mark_duplicates_sql(spec, stage))
        con.execute(f"CREATE TEMP TABLE {stage}_quarantine AS {_quarantine_sql(stage)}")

        rows_parsed = con.execute(f"SELECT count(*) FROM {stage}_checked").fetchone()[0]
        reasons = dict(
            con.execute(
                f"SELECT reason, count(*) FROM {stage}_quarantine GROUP BY reason ORDER BY 2 DESC, 1"
            ).fetchall()
        )
        n_rejected_lines = con.execute(f"SELECT count(DISTINCT line) FROM {stage}_rej").fetchone()[0]
        n_good = con.execute(f"SELECT count(*) FROM {stage}_checked WHERE reason IS NULL").fetchone()[0]
        result = LoadResult(
            source=source,
            partition=month.isoformat(),
            file_name=path.name,
            rows_in=rows_parsed + n_rejected_lines,
            rows_loaded=n_good,
            rows_quarantined=sum(reasons.values()),
            quarantine_reasons=reasons,
            extra_columns=extra,
        )

        if spec.snapshot:
            current = con.execute(f"SELECT max({spec.partition_column}) FROM {spec.table}").fetchone()[0]
            if current is not None and current > month:
                result.skipped = f"older than the current snapshot {current.isoformat()}"
                result.seconds = time.perf_counter() - started
                return result

        _replace_partition(con, spec, stage, month, path.name)
        result.seconds = time.perf_counter() - started
        return result
    finally:
        for suffix in ("_checked", "_quarantine", "_rej", "_scan"):
            con.execute(f"DROP TABLE IF EXISTS {stage}{suffix}")


def _replace_partition(
    con: duckdb.DuckDBPyConnection, spec: Source, stage: str, month: dt.date, file_name: str
) -> None:
    names = ", ".join(quoted(c.name) for c in spec.columns)
    part = quoted(spec.partition_column)
    params = {"month": month}
    with transaction(con):
        if spec.snapshot:
            con.execute(f"DELETE FROM {spec.table}")
            con.execute("DELETE FROM raw.quarantine WHERE source = $source", {"source": spec.name})
        else:
            con.execute(f"DELETE FROM {spec.table} WHERE {part} = $month", params)
            con.execute(
                "DELETE FROM raw.quarantine WHERE source = $source AND partition = $partition",
                {"source": spec.name, "partition": month.isoformat()},
            )
        con.execute(
            f"INSERT INTO {spec.table} ({names}, {part}) "
            f"SELECT {names}, $month FROM {stage}_checked WHERE reason IS NULL",
            params,
        )
        con.execute(
            "INSERT INTO raw.quarantine (source, partition, file_name, line_number, reason, raw_record) "
            f"SELECT $source, $partition, $file_name, line_number, reason, raw_record "
            f"FROM {stage}_quarantine ORDER BY line_number",
            {"source": spec.name, "partition": month.isoformat(), "file_name": file_name},
        )


def read_raw_partition(
    con: duckdb.DuckDBPyConnection,
    source: str,
    partition_month: dt.date,
    sample_rows: int | None = None,
) -> pd.DataFrame:
    """The rows of one raw partition (members: the snapshot of that month), for checks and previews.

    `sample_rows` takes a reproducible reservoir sample instead of the whole partition.
    """
    spec = _source(source)
    sample = ""
    if sample_rows is not None:
        sample = f" USING SAMPLE reservoir({int(sample_rows)} ROWS) REPEATABLE (42)"
    if spec.snapshot:  # one snapshot in the table: the current one
        return con.execute(f"SELECT * FROM {spec.table}{sample}").df()
    return con.execute(
        f"SELECT * FROM (SELECT * FROM {spec.table} WHERE {quoted(spec.partition_column)} = $month){sample}",
        {"month": partition_month.replace(day=1)},
    ).df()
