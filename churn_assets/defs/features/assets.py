"""Labels (official rule), point-in-time training features, and the monthly churn KPI."""

import base64

import dagster as dg

from churn_assets.analytics.publish import publish
from churn_assets.dates import month_of
from churn_assets.defs.keys import LABELS, MEMBER_FEATURES, MONTHLY_CHURN, RAW
from churn_assets.defs.metadata import frame_metadata
from churn_assets.defs.partitions import monthly_partitions, window_mapping
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.features.kpi import churn_chart_png, kpi_history, monthly_churn_kpi
from churn_assets.features.labels import compute_labels, final_on, labels_final, published_agreement
from churn_assets.features.member_features import training_rows
from churn_assets.sql import replace_partition

# Labels of M read the history month M-1 and renewals up to the month that makes
# them final (M+1, M+2 for January). Features of M read at most 90 days back.
# The KPI reads every earlier month (first transactions, long plans still active).
_labels_window = window_mapping(-1, 2)
_history_window = window_mapping(-4, -1)
_all_before = window_mapping(-1200, 0)

MIN_LABEL_AGREEMENT = 0.999


@dg.asset(
    key=LABELS, group_name="features", kinds={"duckdb", "sql"}, pool="duckdb_warehouse",
    partitions_def=monthly_partitions,
    deps=[dg.AssetDep(RAW["transactions"], partition_mapping=_labels_window)],
    description="Churn labels of members expiring in the target month, by the official WSDM rule.",
    check_specs=[dg.AssetCheckSpec(
        "agrees_with_published_labels", asset=LABELS, blocking=True,
        description=f"Agreement with raw.churn_labels where a churn_logs drop exists (blocking below {MIN_LABEL_AGREEMENT:.1%}).",
    )],
)
def labels(context: dg.AssetExecutionContext, warehouse: Warehouse, storage: Storage):
    month = month_of(context.partition_key)
    with warehouse.get_connection() as con:
        frame = compute_labels(con, month)
        replace_partition(con, "features.labels", frame, "target_month", month)
        publish(con, {"features.labels": month}, storage.paths)
        final = labels_final(con, month)
        published = published_agreement(con, month)
    churn_rate = float(frame["is_churn"].mean()) if len(frame) else 0.0
    yield dg.MaterializeResult(metadata=frame_metadata(frame, extra={
        "candidates": len(frame), "churn_rate": churn_rate, "final": final,
        "note": "final" if final else f"not final: renewals of {month:%Y-%m} expiries count until the data reaches {final_on(month)}",
    }))
    n_published, n_matched, n_agree = published
    agreement = n_agree / n_published if n_published else 1.0
    # Published labels are final; ours are only comparable once they are final too.
    skipped = "no churn_logs drop for this month" if not n_published else "" if final else "labels not final yet"
    yield dg.AssetCheckResult(
        check_name="agrees_with_published_labels", passed=bool(skipped) or agreement >= MIN_LABEL_AGREEMENT,
        metadata={"published_labels": n_published, "matched_candidates": n_matched,
                  "agreement_rate": float(agreement), "skipped": skipped},
    )


@dg.asset(
    key=MEMBER_FEATURES, group_name="features", kinds={"duckdb", "sql"}, pool="duckdb_warehouse",
    partitions_def=monthly_partitions,
    deps=[LABELS, RAW["members"],
          dg.AssetDep(RAW["transactions"], partition_mapping=_history_window),
          dg.AssetDep(RAW["user_logs"], partition_mapping=_history_window)],
    description="Training rows: the target month's candidates with features as of its first day (rows dated before it only).",
)
def member_features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    month = month_of(context.partition_key)
    with warehouse.get_connection() as con:
        frame = training_rows(con, month)
        replace_partition(con, "features.member_features", frame, "as_of", month)
    return dg.MaterializeResult(metadata=frame_metadata(frame, extra={"as_of": month.isoformat(), "members": len(frame)}))


@dg.asset(
    key=MONTHLY_CHURN, group_name="features", kinds={"duckdb", "matplotlib"}, pool="duckdb_warehouse",
    partitions_def=monthly_partitions, deps=[LABELS, dg.AssetDep(RAW["transactions"], partition_mapping=_all_before)],
    description="The business churn KPI: churned at the end of the month / members active in the month.",
)
def monthly_churn(context: dg.AssetExecutionContext, warehouse: Warehouse, storage: Storage) -> dg.MaterializeResult:
    month = month_of(context.partition_key)
    with warehouse.get_connection() as con:
        row = monthly_churn_kpi(con, month)
        replace_partition(con, "kpi.monthly_churn", row, "month", month)
        publish(con, {"kpi.monthly_churn": month}, storage.paths)
        history = kpi_history(con)
    chart = churn_chart_png(history, storage.reports / "kpi" / "monthly_churn.png")
    image = base64.b64encode(chart.read_bytes()).decode()
    first = row.iloc[0]
    return dg.MaterializeResult(metadata=frame_metadata(row, extra={
        "churn_rate": float(first["churn_rate"]), "active_members": int(first["active_members"]),
        "new_members": int(first["new_members"]), "churned": int(first["churned"]),
        "chart": dg.MetadataValue.md(f"![monthly churn](data:image/png;base64,{image})"),
        "chart_path": dg.MetadataValue.path(str(chart)),
    }))


features_assets = [labels, member_features, monthly_churn]

features_job = dg.define_asset_job(
    "features_job", selection=dg.AssetSelection.groups("features"), partitions_def=monthly_partitions,
    description="Labels, training features and the KPI for one target month.",
)
