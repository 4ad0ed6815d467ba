"""The metadata every table asset reports in the Dagster UI."""
from __future__ import annotations

import dagster as dg
import pandas as pd


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])


def frame_metadata(frame: pd.DataFrame, preview_rows: int = 10, extra: dict | None = None) -> dict:
    """Row count, schema and a markdown preview, plus `extra`."""
    meta = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": column_schema(frame),
        "preview": dg.MetadataValue.md(frame.head(preview_rows).to_markdown(index=False) if len(frame) else "_empty_"),
    }
    meta.update(extra or {})
    return meta
