"""Raw assets: one monthly drop file -> its typed DuckDB table, quarantine, checks.

Thin by design: the parsing, typing and quarantine live in loading.py, the
Great Expectations suites in quality.py, the profile in profiling.py.
"""

import dagster as dg

from churn_assets.ingest.loading import (
    SOURCES,
    LoadResult,
    ensure_raw_schema,
    find_source_file,
    load_drop_file,
    read_raw_partition,
)
from churn_assets.ingest.profiling import column_profile, markdown_preview
from churn_assets.ingest.quality import validate_raw
from churn_assets.partitions import drop_folder_name, month_of, monthly_partitions
from churn_assets.resources import Warehouse
from churn_assets.settings import paths_from_env

# Great Expectations validates a pandas frame; a fixed-seed sample keeps a
# 20 M-row log partition affordable while row counts come from SQL.
GX_SAMPLE_ROWS = 200_000

RAW_SOURCES = {
    "members": "the members file of the drop (a snapshot: the latest drop wins)",
    "transactions": "subscription transactions dated in the drop month",
    "user_logs": "daily listening logs dated in the drop month",
    "churn_labels": "published labels (churn_logs.csv / train.csv) for members expiring in the drop month",
}


def _check_specs(source: str) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(["raw", source])
    return [
        dg.AssetCheckSpec("gx_blocking", asset=key, blocking=True,
                          description="Keys, schema and value sets downstream results depend on (Great Expectations)."),
        dg.AssetCheckSpec("gx_warnings", asset=key,
                          description="Known quirks of the real data kept within their usual share (Great Expectations)."),
        dg.AssetCheckSpec("rows_accounted", asset=key, blocking=True,
                          description="rows in the file = rows loaded + rows quarantined."),
    ]


def _load_metadata(result: LoadResult, table_rows: int) -> dict:
    return {
        "source_file": result.file_name,
        "rows_in": result.rows_in,
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "quarantine_reasons": dg.MetadataValue.json(result.quarantine_reasons),
        "extra_columns_ignored": dg.MetadataValue.json(result.extra_columns),
        "dagster/row_count": table_rows,
        "load_seconds": float(round(result.seconds, 3)),
    }


def _build_raw_asset(source: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"raw_{source}",
        specs=[dg.AssetSpec(["raw", source], group_name="raw", kinds={"duckdb", "csv"},
                            description=RAW_SOURCES[source], partitions_def=monthly_partitions)],
        check_specs=_check_specs(source),
        pool="duckdb_warehouse",
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: Warehouse):
        month = month_of(context.partition_key)
        drop_dir = paths_from_env().landing / drop_folder_name(month)
        path = find_source_file(drop_dir, source)
        key = dg.AssetKey(["raw", source])
        if path is None:
            if source == "churn_labels":  # optional: only months with published labels have it
                with warehouse.get_connection() as con:  # a re-delivery without labels withdraws them
                    ensure_raw_schema(con)
                    withdrawn = con.execute("DELETE FROM raw.churn_labels WHERE target_month = ?", [month]).fetchone()[0]
                context.log.info(f"no churn_logs file in {drop_dir}: nothing to load ({withdrawn} earlier labels withdrawn)")
                yield dg.MaterializeResult(asset_key=key, metadata={"source_file": "none", "dagster/row_count": 0,
                                                                    "labels_withdrawn": withdrawn})
                for spec in _check_specs(source):
                    yield dg.AssetCheckResult(asset_key=key, check_name=spec.name, passed=True,
                                              metadata={"skipped": "no file in this drop"})
                return
            raise FileNotFoundError(f"{drop_dir} has no {source} file (accepted names: see README, 'Landing files')")

        with warehouse.get_connection() as con:
            result = load_drop_file(con, source, path, month)
            # a fixed-seed sample, never the whole partition, reaches pandas (20 M log rows a month)
            sample = read_raw_partition(con, source, month, sample_rows=GX_SAMPLE_ROWS)
            spec = SOURCES[source]
            where = None if spec.snapshot else f"{spec.partition_column} = ?"
            profile = column_profile(con, spec.table, where, None if spec.snapshot else [month])

        quality = validate_raw(source, sample)
        metadata = _load_metadata(result, int(profile["rows"].iloc[0]) if len(profile) else 0)
        metadata["preview"] = dg.MetadataValue.md(markdown_preview(sample))
        metadata["profile"] = dg.MetadataValue.md(profile.to_markdown(index=False))
        if result.skipped:
            metadata["skipped"] = result.skipped
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)

        failures = {sev: [f for f in quality.failures if f["severity"] == sev] for sev in ("blocking", "warning")}
        yield dg.AssetCheckResult(
            asset_key=key, check_name="gx_blocking", passed=quality.passed_blocking,
            metadata={"failed_expectations": dg.MetadataValue.json(failures["blocking"]),
                      "n_expectations": quality.n_expectations, "rows_validated": len(sample)},
        )
        yield dg.AssetCheckResult(
            asset_key=key, check_name="gx_warnings", passed=quality.passed_warning,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failed_expectations": dg.MetadataValue.json(failures["warning"])},
        )
        yield dg.AssetCheckResult(
            asset_key=key, check_name="rows_accounted",
            passed=result.rows_in == result.rows_loaded + result.rows_quarantined,
            metadata={"rows_in": result.rows_in, "rows_loaded": result.rows_loaded,
                      "rows_quarantined": result.rows_quarantined},
        )

    return _asset


raw_assets = [_build_raw_asset(source) for source in RAW_SOURCES]

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw"),
    partitions_def=monthly_partitions,
    description="Load one monthly drop folder (landing/YYYY-MM) into the raw tables.",
)
