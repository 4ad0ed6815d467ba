"""Column profiles and markdown previews of DuckDB tables (for asset metadata)."""

from __future__ import annotations

from typing import Any, Sequence

import duckdb
import pandas as pd

from churn_assets.sql import ident

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "UBIGINT",
            "UINTEGER", "USMALLINT", "UTINYINT")


def column_profile(
    con: duckdb.DuckDBPyConnection,
    table: str,
    where_sql: str | None = None,
    params: Sequence[Any] | dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per column: type, rows, nulls, null_share, distinct (approximate), min, max, mean.

    `where_sql` is a trusted filter written by the caller with ?/$name placeholders bound from
    `params` (e.g. "partition_month = ?"). All columns are profiled in a single scan.
    """
    schema = con.execute(f"DESCRIBE {ident(table)}").fetchall()
    aggs = ["count(*)"]
    for name, ctype, *_ in schema:
        q = '"' + name.replace('"', '""') + '"'
        numeric = ctype.split("(")[0] in _NUMERIC
        aggs += [
            f"count(*) - count({q})",
            f"approx_count_distinct({q})",
            f"min({q})::VARCHAR",
            f"max({q})::VARCHAR",
            f"avg({q})::DOUBLE" if numeric else "NULL::DOUBLE",
        ]
    where = f" WHERE {where_sql}" if where_sql else ""
    row = con.execute(f"SELECT {', '.join(aggs)} FROM {table}{where}", params or None).fetchone()
    n = row[0]
    records = []
    for i, (name, ctype, *_) in enumerate(schema):
        nulls, distinct, lo, hi, mean = row[1 + 5 * i: 6 + 5 * i]
        records.append({
            "column": name, "type": ctype, "rows": n, "nulls": nulls,
            "null_share": (nulls / n) if n else 0.0, "distinct": distinct,
            "min": lo, "max": hi, "mean": mean,
        })
    return pd.DataFrame.from_records(
        records, columns=["column", "type", "rows", "nulls", "null_share", "distinct", "min", "max", "mean"])


def markdown_preview(df: pd.DataFrame, n: int = 10) -> str:
    """The first n rows as a markdown table (dates and floats rendered compactly)."""
    head = df.head(n)
    if head.empty and len(df.columns) == 0:
        return "_(no columns)_"

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
            return ""
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, pd.Timestamp):
            return v.strftime("%Y-%m-%d") if v == v.normalize() else v.isoformat()
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    if len(df) > n:
        lines.append(f"\n_{n} of {len(df):,} rows_")
    return "\n".join(lines)
