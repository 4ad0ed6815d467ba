"""Weekly scoring assets: the scoring population's features, the scores, the report.

Thin assets: read DuckDB, call the pure functions of churn_assets.scoring, write with
replace_partition, report metadata. The week is the partition key (a Monday); features are
as of that Monday, so only data dated before it is used. The production model comes from
the `registry` resource, report files go under the `storage` resource's reports folder.
"""
import datetime as dt
import re

import dagster as dg
import pandas as pd

from churn_assets.analytics.publish import publish
from churn_assets.core.buckets import A_THRESHOLD, B_THRESHOLD, BUCKETS
from churn_assets.dates import week_of
from churn_assets.defs.keys import CHURN_SCORES, MARKETING_TREATMENTS, PRODUCTION_MODEL, RAW, SCORING_FEATURES, WEEKLY_REPORT
from churn_assets.defs.metadata import frame_metadata
from churn_assets.defs.partitions import weekly_partitions, window_mapping
from churn_assets.defs.resources import ModelRegistry, Smtp, Storage, Warehouse
from churn_assets.defs.scoring.config import ScoringConfig
from churn_assets.marketing.queries import TREATMENTS_TABLE
from churn_assets.marketing.treatments import TREATED
from churn_assets.scoring.emailer import ReportDeliveryError, recipient_list, send_report
from churn_assets.scoring.queries import FEATURES_TABLE, SCORES_TABLE, build_scoring_features, read_week, scoring_window
from churn_assets.marketing.effect import months_final_by, retention_table
from churn_assets.marketing.queries import (read_earlier_treatments, read_month_summaries, read_offer_evidence,
                                            read_offer_outcomes)
from churn_assets.marketing.treatments import is_new_contact
from churn_assets.marketing.uplift import UpliftEstimate
from churn_assets.scoring.report import ReportFiles, build_report, email_subject
from churn_assets.scoring.scores import ScoringPolicy, score_members
from churn_assets.sql import replace_partition

# Features as of a Monday read the 90 days before it: the 13 weeks before the scoring week,
# i.e. the monthly raw partitions those weeks fall in (offsets in weeks of the downstream).
_history_window = window_mapping(-13, -1)
RAW_DEPS = [
    dg.AssetDep(RAW["transactions"], partition_mapping=_history_window),
    dg.AssetDep(RAW["user_logs"], partition_mapping=_history_window),
    RAW["members"],
]
_URI_CREDENTIALS = re.compile(r"//[^/@]+@")


def _safe_uri(uri: str) -> str:
    return _URI_CREDENTIALS.sub("//***@", uri)


def _production_model(registry: ModelRegistry):
    """(model, version) of models:/churn_model@production, or a dg.Failure that says
    what to do when there is none yet."""
    try:
        return registry.load_production()
    except Exception as exc:  # no alias, unreadable store, missing MLflow: one clear message
        message = _safe_uri(f"{type(exc).__name__}: {exc}")
        raise dg.Failure(
            description=(
                f"No production churn model could be loaded from MLflow ({_safe_uri(registry.tracking_uri)}): "
                f"{message}. Train and promote one first (run train_job, which sets the 'production' alias "
                "of churn_model), then re-run this week's scoring."
            )
        ) from None


@dg.asset(
    key=SCORING_FEATURES,
    partitions_def=weekly_partitions,
    group_name="scoring",
    kinds={"duckdb"},
    pool="duckdb_warehouse",
    deps=RAW_DEPS,
    description="As-of-Monday features of the members whose membership expires within 30 days.",
)
def scoring_features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    week = week_of(context.partition_key)
    with warehouse.get_connection() as con:
        features = build_scoring_features(con, week)
        replace_partition(con, FEATURES_TABLE, features, "week_start", week)
    start, end = scoring_window(week)
    return dg.MaterializeResult(metadata=frame_metadata(
        features,
        extra={
            "members": dg.MetadataValue.int(len(features)),
            "window": dg.MetadataValue.text(f"membership_expire_date in [{start}, {end})"),
        },
    ))


def _scores_metadata(scores: pd.DataFrame, version: str, policy: ScoringPolicy, learned: UpliftEstimate | None) -> dict:
    counts = scores["bucket"].value_counts().reindex(list(BUCKETS), fill_value=0)
    extra = {f"bucket_{b}": dg.MetadataValue.int(int(counts[b])) for b in BUCKETS}
    extra.update({
        "mean_churn_probability": dg.MetadataValue.float(float(scores["churn_probability"].mean()) if len(scores) else 0.0),
        "offers": dg.MetadataValue.int(int((scores["discount_pct"] > 0).sum())),
        "model_version": dg.MetadataValue.text(str(version)),
        "a_threshold": dg.MetadataValue.float(policy.a_threshold),
        "b_threshold": dg.MetadataValue.float(policy.b_threshold),
        "call_capacity": dg.MetadataValue.int(policy.call_capacity if policy.call_capacity is not None else -1),
        "exploration_share": dg.MetadataValue.float(policy.exploration_share),
    })
    if learned is not None:
        extra["offer_uplift"] = dg.MetadataValue.md(learned.table.round(4).to_markdown(index=False))
    if learned is not None and learned.model is not None:  # bucket B's discount per member
        extra["offer_model"] = dg.MetadataValue.md(learned.model.table().round(4).to_markdown(index=False))
        extra["offer_model_outcomes"] = dg.MetadataValue.int(learned.model.n_outcomes)
    return frame_metadata(scores, extra=extra)


@dg.asset(
    key=CHURN_SCORES,
    partitions_def=weekly_partitions,
    group_name="scoring",
    kinds={"duckdb", "lightgbm"},
    pool="duckdb_warehouse",
    deps=[SCORING_FEATURES, PRODUCTION_MODEL],
    description="Churn probability, bucket, action, reasons (A/B) and discount (B) per expiring member.",
)
def churn_scores(
    context: dg.AssetExecutionContext, config: ScoringConfig, warehouse: Warehouse, registry: ModelRegistry,
    storage: Storage,
) -> dg.MaterializeResult:
    week = week_of(context.partition_key)
    config.policy()  # validates thresholds before any work
    with warehouse.get_connection() as con:
        features = read_week(con, FEATURES_TABLE, week)
        # the feedback loop: last months' measured uplift and this cycle's contacts (read, not a
        # dependency: the experiment's assets come after the scores in the graph)
        outcomes = read_offer_outcomes(con, week) if config.per_member_offer else None
        learned = config.learned(read_offer_evidence(con, week), outcomes)
        earlier = read_earlier_treatments(con, week)
    if features is None:
        raise dg.Failure(f"{FEATURES_TABLE} does not exist: materialise scoring/scoring_features for {week} first.")
    model, version = _production_model(registry)
    policy = config.policy(learned)
    scores = score_members(features, model, str(version), week, policy, new_contact=is_new_contact(features, earlier))
    with warehouse.get_connection() as con:
        replace_partition(con, SCORES_TABLE, scores, "week_start", week)
        publish(con, {SCORES_TABLE: week}, storage.paths)
    metadata = _scores_metadata(scores, version, policy, learned)
    counts = {b: metadata[f"bucket_{b}"].value for b in BUCKETS}
    context.log.info(f"week {week}: {len(scores)} members scored with model version {version}: {counts}")
    return dg.MaterializeResult(metadata=metadata)


def _thresholds(instance: dg.DagsterInstance, partition: str) -> tuple[float, float]:
    """The thresholds the scores of this week were bucketed with (for the chart)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHURN_SCORES, asset_partitions=[partition]), limit=1
    ).records
    meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
    a, b = meta.get("a_threshold"), meta.get("b_threshold")
    return (a.value if a else A_THRESHOLD, b.value if b else B_THRESHOLD)


def _email(context: dg.AssetExecutionContext, smtp: Smtp, files: ReportFiles, week: dt.date,
           contacts: pd.DataFrame, metadata: dict) -> dict:
    """Send the report (the subject counts the week's treated new `contacts`); the metadata gains
    emailed/recipients. A delivery failure fails the asset, keeping the files and saying where they are."""
    try:
        send_report(smtp, files.html_path, files.csv_path, email_subject(week, contacts))
    except ReportDeliveryError as exc:
        raise dg.Failure(
            description=f"{exc} Report kept at {files.html_path}.",
            metadata={k: v for k, v in metadata.items() if k != "emailed"},
        ) from None
    recipients = len(recipient_list(smtp.recipients))
    context.log.info(f"report for {week} e-mailed to {recipients} recipient(s)")
    return {**metadata, "emailed": dg.MetadataValue.bool(True), "recipients": dg.MetadataValue.int(recipients)}


@dg.asset(
    key=WEEKLY_REPORT,
    partitions_def=weekly_partitions,
    group_name="scoring",
    kinds={"html", "email"},
    pool="duckdb_warehouse",  # reads the DuckDB file, which locks out writers in other processes
    deps=[CHURN_SCORES, MARKETING_TREATMENTS],
    description="Weekly HTML report and at_risk_members.csv (the week's new treated contacts) for marketing, "
    "e-mailed when SMTP is set.",
)
def weekly_churn_report(
    context: dg.AssetExecutionContext, warehouse: Warehouse, storage: Storage, smtp: Smtp
) -> dg.MaterializeResult:
    from churn_assets.monitoring.charts import report_charts  # matplotlib: only when a report is drawn

    week = week_of(context.partition_key)
    with warehouse.get_connection() as con:
        scores = read_week(con, SCORES_TABLE, week)
        previous = read_week(con, SCORES_TABLE, week - dt.timedelta(days=7))
        treatments = read_week(con, TREATMENTS_TABLE, week)
        effects = retention_table(months_final_by(read_month_summaries(con), week))
        charts = report_charts(con, week, storage.paths)  # what was knowable on this Monday
    if scores is None or treatments is None:
        raise dg.Failure(f"{SCORES_TABLE if scores is None else TREATMENTS_TABLE} does not exist: materialise "
                         f"scoring/churn_scores and marketing/treatments for {week} first.")
    if previous is not None and previous.empty:
        previous = None
    a_threshold, b_threshold = _thresholds(context.instance, context.partition_key)
    out_dir = storage.reports / "weekly" / str(week)
    files = build_report(scores, previous, week, out_dir, a_threshold, b_threshold, treatments=treatments,
                         effects=effects, charts=charts)
    contacts = treatments[treatments["arm"] == TREATED]
    metadata = {
        "summary": dg.MetadataValue.md(files.markdown),
        "html_report": dg.MetadataValue.path(str(files.html_path)),
        "csv": dg.MetadataValue.path(str(files.csv_path)),
        "emailed": dg.MetadataValue.bool(False),
        "contacts": dg.MetadataValue.int(len(contacts)),
        "control": dg.MetadataValue.int(len(treatments) - len(contacts)),
    }
    if smtp.enabled:
        metadata = _email(context, smtp, files, week, contacts, metadata)
    else:
        context.log.info(f"SMTP not configured: report for {week} written to {out_dir} only")
    return dg.MaterializeResult(metadata=metadata)


scoring_assets = [scoring_features, churn_scores, weekly_churn_report]
