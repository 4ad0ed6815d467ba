"""Publish user-facing warehouse tables as Parquet, one file per partition.

DuckDB allows one writing process per file, and a reader in another process
blocks it. Analysts therefore never open the warehouse: they open
`data/analytics.duckdb`, a small file of views over Parquet files under
`data/analytics/<schema>/<table>/`.

Published files are immutable. DuckDB opens a Parquet file twice per query
(footer at planning, data at scan), so a file renamed over one being read
gives "TProtocolException: Invalid data" or worse. A republished partition is
therefore a new file, `<column>=<value>__<version>.parquet` (written to a temp
name, then renamed: no half-written name ever appears), and the views name
the current version of each partition explicitly. The views file is built in
a temp file and renamed over the old one, so
- a reader sees whole versions only, and a session opened before a republish
  keeps a consistent snapshot (its views still name the old files),
- the pipeline never opens analytics.duckdb nor waits for a reader,
- superseded versions are deleted `keep_seconds` after their successor was
  published (default a day), so running sessions have time to reopen.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

import duckdb

from churn_assets.settings import Paths
from churn_assets.sql import ident, is_ident

# Published table -> its partition column (None: the whole table is one partition).
PUBLISHED_TABLES: dict[str, str | None] = {
    "scoring.churn_scores": "week_start",
    "monitoring.drift_reports": "week_start",
    "monitoring.drift_columns": "week_start",
    "monitoring.model_performance": "target_month",
    "kpi.monthly_churn": "month",
    "features.labels": "target_month",
    "marketing.treatments": "week_start",
    "marketing.retention_effect": "target_month",
    "monitoring.serving_drift": "week_start",
}

ANALYTICS_DB_NAME = "analytics.duckdb"
KEEP_SUPERSEDED_SECONDS = 24 * 3600.0

# Partition values end up in file names: dates and plain tokens only.
_FILE_TOKEN = re.compile(r"^[A-Za-z0-9_.-]+$")
# <partition>__<19-digit time_ns>-<hex>.(parquet|empty); an .empty file is a
# tombstone: the partition was emptied.
_VERSIONED = re.compile(r"^(?P<partition>.+)__(?P<ns>\d{19})-[0-9a-f]{6}\.(?P<kind>parquet|empty)$")


def _value_text(value: object) -> str:
    if isinstance(value, datetime):  # also pandas.Timestamp
        if value.time() != datetime.min.time():
            raise ValueError(f"partition value {value!r} has a time of day; publish by date")
        value = value.date()
    text = value.isoformat() if isinstance(value, date) else str(value)
    if not _FILE_TOKEN.match(text):
        raise ValueError(f"partition value {value!r} cannot be used in a file name")
    return text


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _temp_beside(path: Path) -> Path:
    """A temp name in the same directory (same filesystem: the rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def table_dir(analytics_dir: Path, table: str) -> Path:
    schema, _, name = ident(table).rpartition(".")
    return Path(analytics_dir) / (schema or "main") / name


def partition_name(partition_column: str | None, partition_value: object) -> str:
    """`<column>=<value>`, or `all` for an unpartitioned table."""
    return "all" if partition_column is None else f"{ident(partition_column)}={_value_text(partition_value)}"


def _versions(directory: Path) -> dict[str, list[tuple[int, Path]]]:
    """{partition: [(published_ns, path) oldest first]} of a table directory."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in directory.iterdir() if directory.is_dir() else ():
        m = _VERSIONED.match(path.name)
        if m:
            found.setdefault(m["partition"], []).append((int(m["ns"]), path))
    return {k: sorted(v) for k, v in found.items()}


def current_files(directory: Path) -> list[Path]:
    """The current Parquet file of each partition in a table directory
    (partitions whose latest version is a tombstone are left out)."""
    latest = (versions[-1][1] for versions in _versions(directory).values())
    return sorted(p for p in latest if p.suffix == ".parquet")


def _forget_superseded(directory: Path, partition: str, keep_seconds: float) -> None:
    """Delete versions whose successor was published more than keep_seconds ago."""
    horizon = time.time_ns() - int(keep_seconds * 1e9)
    versions = _versions(directory).get(partition, [])
    for (_, path), (successor_ns, _) in zip(versions, versions[1:]):
        if successor_ns <= horizon:
            path.unlink(missing_ok=True)


def publish_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str | None,
    partition_value: object,
    analytics_dir: Path,
    keep_seconds: float = KEEP_SUPERSEDED_SECONDS,
) -> Path:
    """Publish the rows of one partition of `table` (the whole table when
    partition_column is None) as a new immutable Parquet file, or a tombstone
    when the partition is empty. Returns the new file's path; the views see it
    after `refresh_analytics_views`."""
    directory = table_dir(analytics_dir, table)
    directory.mkdir(parents=True, exist_ok=True)
    partition = partition_name(partition_column, partition_value)
    version = f"{partition}__{time.time_ns():019d}-{uuid.uuid4().hex[:6]}"
    target = directory / f"{version}.parquet"
    tmp = _temp_beside(target)
    where, params = ("", []) if partition_column is None else (f" WHERE {ident(partition_column)} = ?", [partition_value])
    try:
        rows = con.execute(
            f"COPY (SELECT * FROM {ident(table)}{where}) TO {_sql_string(tmp)} (FORMAT parquet, COMPRESSION zstd)",
            params,
        ).fetchone()[0]
        if not rows:
            target = directory / f"{version}.empty"
            tmp.write_bytes(b"")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _forget_superseded(directory, partition, keep_seconds)
    return target


def publish_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str | None,
    analytics_dir: Path,
    keep_seconds: float = KEEP_SUPERSEDED_SECONDS,
) -> list[Path]:
    """(Re)publish every partition of `table`, and tombstone published
    partitions the table no longer has: for a first publication or after a
    backfill. Returns the table's current files."""
    if partition_column is None:
        values = [None]
    else:
        col = ident(partition_column)
        values = [r[0] for r in con.execute(
            f"SELECT DISTINCT {col} FROM {ident(table)} WHERE {col} IS NOT NULL ORDER BY 1").fetchall()]
    directory = table_dir(analytics_dir, table)
    gone = set(_versions(directory)) - {partition_name(partition_column, v) for v in values}
    for value in values:
        publish_partition(con, table, partition_column, value, analytics_dir, keep_seconds)
    for partition in gone:  # tombstone without touching the warehouse
        (directory / f"{partition}__{time.time_ns():019d}-{uuid.uuid4().hex[:6]}.empty").touch()
        _forget_superseded(directory, partition, keep_seconds)
    return current_files(directory)


def refresh_analytics_views(analytics_dir: Path, db_path: Path) -> list[str]:
    """(Re)create the analysts' DuckDB file: one view `<schema>.<table>` per
    published table over the current file of each partition (absolute paths).
    Built in a temp file and renamed over `db_path`, so an analyst who has the
    old file open keeps it and blocks nobody. Returns the view names."""
    analytics_dir, db_path = Path(analytics_dir).resolve(), Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tables = {
        (d.parent.name, d.name): files
        for d in sorted(analytics_dir.glob("*/*"))
        if d.is_dir() and is_ident(d.parent.name, dotted=False) and is_ident(d.name, dotted=False) and (files := current_files(d))
    }
    tmp = _temp_beside(db_path)
    try:
        with duckdb.connect(str(tmp)) as con:
            for (schema, name), files in tables.items():
                listed = ", ".join(_sql_string(f) for f in files)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
                con.execute(
                    f"CREATE VIEW {ident(f'{schema}.{name}')} AS SELECT * FROM "
                    f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"
                )
            con.execute("CHECKPOINT")
        os.replace(tmp, db_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return [f"{schema}.{name}" for schema, name in tables]


def analytics_db_path(paths: Paths) -> Path:
    return paths.data_dir / ANALYTICS_DB_NAME


def publish(con: duckdb.DuckDBPyConnection, partitions: Mapping[str, object], paths: Paths) -> list[Path]:
    """An asset's publishing step after its writes: publish each {PUBLISHED_TABLES table:
    partition value} under `<data dir>/analytics/`, then refresh `analytics.duckdb` once."""
    files = [publish_partition(con, table, PUBLISHED_TABLES[table], value, paths.analytics)
             for table, value in partitions.items()]
    refresh_analytics_views(paths.analytics, analytics_db_path(paths))
    return files
