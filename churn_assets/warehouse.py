"""Small shared helpers for writing DuckDB tables from assets.

Every partitioned table follows "create if missing, delete the partition,
insert" inside one transaction, so a re-run replaces exactly its partition and
a crash mid-write leaves the previous contents (DuckDB rolls back). The tables
analysts query are then published as Parquet (churn_assets.analytics).
"""
from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
import duckdb
import pandas as pd

from churn_assets.analytics.publish import PUBLISHED_TABLES, publish
from churn_assets.identifiers import ident



def date_columns(frame: pd.DataFrame) -> list[str]:
    """Datetime columns holding whole days only: DuckDB returns DATE as
    datetime64, and they must go back as DATE, not TIMESTAMP."""
    return [
        c for c in frame.columns
        if pd.api.types.is_datetime64_any_dtype(frame[c]) and (frame[c].dropna() == frame[c].dropna().dt.normalize()).all()
    ]


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    partition_column: str | None = None,
    partition_value: object = None,
    dates: list[str] | None = None,
) -> int:
    """Replace the rows of `table` where partition_column = partition_value with
    `frame` (or the whole table when partition_column is None), atomically.
    The table is created from the frame's schema on first use, with `dates`
    (default: the whole-day datetime columns) typed DATE."""
    table = ident(table)
    dates = date_columns(frame) if dates is None else dates
    schema = table.split(".")[0] if "." in table else None
    con.execute("BEGIN TRANSACTION")
    try:
        if schema:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.register("_incoming", frame)
        casts = ", ".join(f"CAST({ident(c)} AS DATE) AS {ident(c)}" for c in dates)
        select = f"SELECT * REPLACE ({casts})" if casts else "SELECT *"
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {select} FROM _incoming LIMIT 0")
        if partition_column is None:
            con.execute(f"DELETE FROM {table}")
        else:
            con.execute(f"DELETE FROM {table} WHERE {ident(partition_column)} = ?", [partition_value])
        cols = ", ".join(ident(c) for c in frame.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_incoming")
    if table in PUBLISHED_TABLES:  # analysts read the published copy, never this file
        publish(con, table, partition_value)
    return len(frame)


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = ident(table).rpartition(".")
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = coalesce(nullif(?, ''), 'main') AND table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])


def frame_metadata(frame: pd.DataFrame, preview_rows: int = 10, extra: dict | None = None) -> dict:
    """The metadata every table asset reports: row count, schema, a preview."""
    meta = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": column_schema(frame),
        "preview": dg.MetadataValue.md(frame.head(preview_rows).to_markdown(index=False) if len(frame) else "_empty_"),
    }
    meta.update(extra or {})
    return meta


def in_list(values: Iterable[str]) -> str:
    """A tuple of '?' placeholders for an IN clause."""
    return ", ".join("?" for _ in values)
