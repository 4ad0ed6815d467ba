"""Raw assets: one monthly drop file -> its typed DuckDB table, quarantine, checks.

Thin by design: the parsing, typing and quarantine live in churn_assets.ingest.loading,
the Great Expectations suites in ingest.quality, the partition's orchestration in
ingest.partition; this module turns results into metadata and check results.
"""
import dagster as dg

from churn_assets.dates import drop_folder_name, month_of
from churn_assets.defs.keys import RAW
from churn_assets.defs.partitions import monthly_partitions
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.ingest.loading import find_source_file
from churn_assets.ingest.partition import IngestedPartition, ingest_drop_file, withdraw_labels
from churn_assets.ingest.profiling import markdown_preview
from churn_assets.ingest.quality import QualityResult, validate_raw

RAW_SOURCES = {
    "members": "the members file of the drop (a snapshot: the latest drop wins)",
    "transactions": "subscription transactions dated in the drop month",
    "user_logs": "daily listening logs dated in the drop month",
    "churn_labels": "published labels (churn_logs.csv / train.csv) for members expiring in the drop month",
}
CHECKS = {
    "gx_blocking": (True, "Keys, schema and value sets downstream results depend on (Great Expectations)."),
    "gx_warnings": (False, "Known quirks of the real data kept within their usual share (Great Expectations)."),
    "rows_accounted": (True, "rows in the file = rows loaded + rows quarantined."),
}


def _check_specs(source: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=RAW[source], blocking=blocking, description=description)
            for name, (blocking, description) in CHECKS.items()]


def _materialization(key: dg.AssetKey, loaded: IngestedPartition) -> dg.MaterializeResult:
    r = loaded.result
    metadata = {
        "source_file": r.file_name,
        "rows_in": r.rows_in,
        "rows_loaded": r.rows_loaded,
        "rows_quarantined": r.rows_quarantined,
        "quarantine_reasons": dg.MetadataValue.json(r.quarantine_reasons),
        "extra_columns_ignored": dg.MetadataValue.json(r.extra_columns),
        "dagster/row_count": loaded.table_rows,
        "load_seconds": float(round(r.seconds, 3)),
        "preview": dg.MetadataValue.md(markdown_preview(loaded.sample)),
        "profile": dg.MetadataValue.md(loaded.profile.to_markdown(index=False)),
    }
    if r.skipped:
        metadata["skipped"] = r.skipped
    return dg.MaterializeResult(asset_key=key, metadata=metadata)


def _check_results(key: dg.AssetKey, loaded: IngestedPartition, quality: QualityResult) -> list[dg.AssetCheckResult]:
    failures = {sev: [f for f in quality.failures if f["severity"] == sev] for sev in ("blocking", "warning")}
    r = loaded.result
    return [
        dg.AssetCheckResult(asset_key=key, check_name="gx_blocking", passed=quality.passed_blocking,
                            metadata={"failed_expectations": dg.MetadataValue.json(failures["blocking"]),
                                      "n_expectations": quality.n_expectations, "rows_validated": len(loaded.sample)}),
        dg.AssetCheckResult(asset_key=key, check_name="gx_warnings", passed=quality.passed_warning,
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"failed_expectations": dg.MetadataValue.json(failures["warning"])}),
        dg.AssetCheckResult(asset_key=key, check_name="rows_accounted", passed=loaded.rows_accounted,
                            metadata={"rows_in": r.rows_in, "rows_loaded": r.rows_loaded,
                                      "rows_quarantined": r.rows_quarantined}),
    ]


def _without_labels_file(key: dg.AssetKey, withdrawn: int) -> list:
    """churn_labels is optional: only months with published labels have the file."""
    return [dg.MaterializeResult(asset_key=key, metadata={"source_file": "none", "dagster/row_count": 0,
                                                          "labels_withdrawn": withdrawn}),
            *(dg.AssetCheckResult(asset_key=key, check_name=name, passed=True,
                                  metadata={"skipped": "no file in this drop"}) for name in CHECKS)]


def _build_raw_asset(source: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"raw_{source}",
        specs=[dg.AssetSpec(RAW[source], group_name="raw", kinds={"duckdb", "csv"},
                            description=RAW_SOURCES[source], partitions_def=monthly_partitions)],
        check_specs=_check_specs(source),
        pool="duckdb_warehouse",
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: Warehouse, storage: Storage):
        month = month_of(context.partition_key)
        drop_dir = storage.landing / drop_folder_name(month)
        path = find_source_file(drop_dir, source)
        if path is None and source == "churn_labels":
            with warehouse.get_connection() as con:
                withdrawn = withdraw_labels(con, month)
            context.log.info(f"no churn_logs file in {drop_dir}: nothing to load ({withdrawn} earlier labels withdrawn)")
            yield from _without_labels_file(RAW[source], withdrawn)
            return
        if path is None:
            raise FileNotFoundError(f"{drop_dir} has no {source} file (accepted names: see README, 'Landing files')")
        with warehouse.get_connection() as con:
            loaded = ingest_drop_file(con, source, path, month)
        yield _materialization(RAW[source], loaded)
        yield from _check_results(RAW[source], loaded, validate_raw(source, loaded.sample))

    return _asset


raw_assets = [_build_raw_asset(source) for source in RAW_SOURCES]

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw"),
    partitions_def=monthly_partitions,
    description="Load one monthly drop folder (landing/YYYY-MM) into the raw tables.",
)
