"""The warehouse's SQL plumbing in one place, free of Dagster.

- `ident`: every identifier that reaches formatted SQL (schema, table, column)
  is validated here; values always travel as parameters.
- `replace_partition`: every partitioned table follows "create if missing,
  delete the partition, insert" inside one transaction, so a re-run replaces
  exactly its partition and a crash mid-write leaves the previous contents
  (DuckDB rolls back). It only writes: publishing for analysts is the asset's
  own, explicit step (churn_assets.analytics.publish).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pandas as pd

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENT = re.compile(rf"^{_NAME}(\.{_NAME})?$")
_PLAIN = re.compile(rf"^{_NAME}$")


def is_ident(name: object, dotted: bool = True) -> bool:
    """True for a plain identifier (or schema.identifier when `dotted`)."""
    return isinstance(name, str) and bool((_IDENT if dotted else _PLAIN).match(name))


def ident(name: str) -> str:
    """Return `name` if it is a plain (schema.)identifier, else raise ValueError."""
    if not is_ident(name):
        raise ValueError(f"not a valid SQL identifier: {name!r}")
    return name


def quoted(name: str) -> str:
    """A validated column name, double-quoted (source columns may collide with keywords, e.g. date)."""
    if not is_ident(name, dotted=False):
        raise ValueError(f"not a valid SQL identifier: {name!r}")
    return f'"{name}"'


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (re-raised)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


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
    try:
        with transaction(con):  # BEGIN first: it also closes a result left open on `con`
            con.register("_incoming", frame)
            if schema:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            casts = ", ".join(f"CAST({ident(c)} AS DATE) AS {ident(c)}" for c in dates)
            select = f"SELECT * REPLACE ({casts})" if casts else "SELECT *"
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {select} FROM _incoming LIMIT 0")
            # additive evolution: a column new in this version is added (NULL in earlier rows)
            existing = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
            for name, kind, *_ in con.execute(f"DESCRIBE {select} FROM _incoming").fetchall():
                if name not in existing:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {ident(name)} {kind}")
            if partition_column is None:
                con.execute(f"DELETE FROM {table}")
            else:
                con.execute(f"DELETE FROM {table} WHERE {ident(partition_column)} = ?", [partition_value])
            cols = ", ".join(ident(c) for c in frame.columns)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
    finally:
        con.unregister("_incoming")
    return len(frame)


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = ident(table).rpartition(".")
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = coalesce(nullif(?, ''), 'main') AND table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )
