"""Shared helpers for the reliability tests (no tests here): table digests, a
warehouse loaded straight from the tiny world's drops, stub model and drift reference."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.sql import ident
from churn_assets.ingest.loading import find_source_file, load_drop_file

SOURCES = ("members", "transactions", "user_logs", "churn_labels")
# Columns that record *when* a row was written, not what it says: left out of digests.
VOLATILE_COLUMNS = {"scored_at", "decided_at", "created_at", "updated_at", "loaded_at"}


def table_digest(con: duckdb.DuckDBPyConnection, table: str, where: str = "", params: list | None = None,
                 columns: list[str] | None = None, float_decimals: int | None = None) -> tuple:
    """(row count, sha256) of the table's rows rendered as text, in a total order,
    with the column names and types; volatile timestamp columns excluded (or only `columns`).
    `float_decimals` rounds DOUBLE columns (DuckDB's parallel sum of doubles is not
    bit-reproducible from run to run)."""
    schema, _, name = ident(table).rpartition(".")
    described = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema or "main", name],
    ).fetchall()
    kept = [c for c, _ in described if (c in columns if columns else c not in VOLATILE_COLUMNS)]
    types = dict(described)
    cols = ", ".join(
        f'round("{c}", {int(float_decimals)}) AS "{c}"' if float_decimals is not None and types[c] in ("DOUBLE", "FLOAT")
        else f'"{c}"' for c in kept)
    rows = con.execute(
        f"SELECT CAST(t AS VARCHAR) AS r FROM (SELECT {cols} FROM {table} {where}) t ORDER BY r", params or [],
    ).fetchall()
    h = hashlib.sha256(repr([d for d in described if d[0] in kept]).encode())
    for (r,) in rows:
        h.update(r.encode())
        h.update(b"\n")
    return len(rows), h.hexdigest()


def partition_digests(con: duckdb.DuckDBPyConnection, table: str, column: str,
                      columns: list[str] | None = None, float_decimals: int | None = None) -> dict[str, tuple]:
    values = [v for (v,) in con.execute(f"SELECT DISTINCT {ident(column)} FROM {ident(table)} ORDER BY 1").fetchall()]
    return {str(v): table_digest(con, table, f"WHERE {ident(column)} = ?", [v], columns, float_decimals) for v in values}


def load_months(con: duckdb.DuckDBPyConnection, landing: Path, months: list[str]) -> None:
    """Load drop folders straight into raw.* (the fast path, no Dagster): test setup only."""
    for month in months:
        drop = Path(landing) / month
        for source in SOURCES:
            path = find_source_file(drop, source)
            if path is not None:
                load_drop_file(con, source, path, dt.date.fromisoformat(month + "-01"))


class StubModel:
    """p = 1 - days_to_expiry / 30, deterministic; the registry's interface."""

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return np.clip(1.0 - df["days_to_expiry"].to_numpy(float) / 30.0, 0.0, 1.0)

    def contributions(self, df: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(0.0, index=df.index, columns=[*FEATURE_COLUMNS, "bias"])
        out["days_to_expiry"] = 1.0
        out["last_is_auto_renew"] = 0.5
        return out


def stub_reference(db: str, as_of: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A drift reference (training features of one month) and its validation scores."""
    with duckdb.connect(db, read_only=True) as con:
        ref = con.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)} FROM features.member_features WHERE as_of = ?", [as_of]).df()
    scores = pd.DataFrame({"churn_probability": StubModel().predict_proba(ref)})
    return ref, scores


SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "API key (sk-)": re.compile(r"\bsk-[A-Za-z0-9]{20,}\b"),
    "credentials in a URL": re.compile(r"[a-z+]+://[^/\s:@]+:([^@\s/]+)@"),
    "password assignment": re.compile(r"(?i)\b(?:password|passwd|secret|api_key|token)\b\s*[:=]\s*['\"]([^'\"\s]{6,})['\"]"),
}
