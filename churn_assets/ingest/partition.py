"""One raw partition end to end, without Dagster: load the drop file, then read back what the
checks and the asset's metadata need (a fixed-seed sample for Great Expectations, a profile)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.ingest.loading import SOURCES, LoadResult, ensure_raw_schema, load_drop_file, read_raw_partition
from churn_assets.ingest.profiling import column_profile

# Great Expectations validates a pandas frame; a fixed-seed sample keeps a
# 20 M-row log partition affordable while row counts come from SQL.
GX_SAMPLE_ROWS = 200_000


@dataclass
class IngestedPartition:
    result: LoadResult
    sample: pd.DataFrame  # at most GX_SAMPLE_ROWS rows of the partition as now stored
    profile: pd.DataFrame  # column_profile of the partition

    @property
    def table_rows(self) -> int:
        return int(self.profile["rows"].iloc[0]) if len(self.profile) else 0

    @property
    def rows_accounted(self) -> bool:
        """Every data line of the file is either loaded or quarantined."""
        r = self.result
        return r.rows_in == r.rows_loaded + r.rows_quarantined


def ingest_drop_file(con: duckdb.DuckDBPyConnection, source: str, path: Path, month: dt.date,
                     sample_rows: int = GX_SAMPLE_ROWS) -> IngestedPartition:
    """Replace `source`'s partition `month` with `path`, then sample and profile it."""
    result = load_drop_file(con, source, path, month)
    spec = SOURCES[source]
    where = None if spec.snapshot else f"{spec.partition_column} = ?"
    return IngestedPartition(
        result=result,
        sample=read_raw_partition(con, source, month, sample_rows=sample_rows),
        profile=column_profile(con, spec.table, where, None if spec.snapshot else [month]),
    )


def withdraw_labels(con: duckdb.DuckDBPyConnection, month: dt.date) -> int:
    """A re-delivery of `month` without a churn_logs file withdraws its published labels."""
    ensure_raw_schema(con)
    return con.execute("DELETE FROM raw.churn_labels WHERE target_month = ?", [month]).fetchone()[0]
