"""Weekly scoring assets: the scoring population's features, the scores, the report.

Thin assets: read DuckDB, call the pure functions beside them, write with
replace_partition, report metadata. The week is the partition key (a Monday);
features are as of that Monday, so only data dated before it is used.
"""

import datetime as dt
import os
import re

import dagster as dg
import pandas as pd
from pydantic import Field

from churn_assets.features.member_features import build_member_features, expiring_members
from churn_assets.partitions import week_of, weekly_partitions, window_mapping
from churn_assets.resources import SmtpResource, Warehouse
from churn_assets.scoring.buckets import A_THRESHOLD, B_THRESHOLD, BUCKETS
from churn_assets.scoring.emailer import ReportDeliveryError, recipient_list, send_report
from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, DEFAULT_LADDER, DEFAULT_UPLIFT_BY_BUCKET
from churn_assets.scoring.report import build_report
from churn_assets.scoring.scores import ScoringPolicy, score_members
from churn_assets.settings import paths_from_env
from churn_assets.warehouse import frame_metadata, replace_partition, table_exists

SCORING_WINDOW_DAYS = 30
FEATURES_TABLE = "scoring.scoring_features"
SCORES_TABLE = "scoring.churn_scores"
SCORING_FEATURES_KEY = dg.AssetKey(["scoring", "scoring_features"])
CHURN_SCORES_KEY = dg.AssetKey(["scoring", "churn_scores"])
REPORT_KEY = dg.AssetKey(["reports", "weekly_churn_report"])
PRODUCTION_MODEL_KEY = dg.AssetKey(["ml", "production_model"])
# features as of a Monday read up to a year of monthly raw partitions before it (offsets in weeks)
_history_window = window_mapping(-13, -1)  # the weeks of the 90 days the features read
RAW_DEPS = [
    dg.AssetDep(dg.AssetKey(["raw", "transactions"]), partition_mapping=_history_window),
    dg.AssetDep(dg.AssetKey(["raw", "user_logs"]), partition_mapping=_history_window),
    dg.AssetKey(["raw", "members"]),
]


def scoring_window(week_start: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end): memberships expiring in the 30 days from the Monday."""
    return week_start, week_start + dt.timedelta(days=SCORING_WINDOW_DAYS)


def build_scoring_features(con, week_start: dt.date, raw_schema: str = "raw") -> pd.DataFrame:
    """week_start, msno, as_of, membership_expire_date, FEATURE_COLUMNS for the members
    whose membership expires in scoring_window(week_start)."""
    start, end = scoring_window(week_start)
    expiring = expiring_members(con, start, end, raw_schema=raw_schema)
    con.register("_expiring", expiring[["msno"]])
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE scoring_population AS SELECT DISTINCT msno FROM _expiring")
    finally:
        con.unregister("_expiring")
    features = build_member_features(con, as_of=week_start, members="scoring_population", raw_schema=raw_schema)
    for column in ("as_of", "membership_expire_date"):  # .df() gives datetime64: keep DATE in DuckDB
        features[column] = pd.to_datetime(features[column]).dt.date
    features.insert(0, "week_start", pd.Series([week_start] * len(features), dtype=object))
    return features


def _read_week(con, table: str, week: dt.date) -> pd.DataFrame | None:
    if not table_exists(con, table):
        return None
    return con.execute(f"SELECT * FROM {table} WHERE week_start = ? ORDER BY msno", [week]).df()


_URI_CREDENTIALS = re.compile(r"//[^/@]+@")


def _safe_uri(uri: str) -> str:
    return _URI_CREDENTIALS.sub("//***@", uri)


def load_production_model():
    """(model, version) of models:/churn_model@production, or a dg.Failure that says
    what to do when there is none yet."""
    uri = paths_from_env().mlflow_tracking_uri
    try:
        from churn_assets.model.registry import load_production  # imports MLflow (slow): only here

        return load_production(uri)
    except Exception as exc:  # no registry module, no alias, unreadable store: one clear message
        message = _safe_uri(f"{type(exc).__name__}: {exc}")
        raise dg.Failure(
            description=(
                f"No production churn model could be loaded from MLflow ({_safe_uri(uri)}): {message}. "
                "Train and promote one first (run train_job, which sets the 'production' alias "
                "of churn_model), then re-run this week's scoring."
            )
        ) from None


@dg.asset(
    key=SCORING_FEATURES_KEY,
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


class ScoringConfig(dg.Config):
    a_threshold: float = Field(default=A_THRESHOLD, description="Bucket A (call) from this churn probability.")
    b_threshold: float = Field(default=B_THRESHOLD, description="Bucket B (discount) from this probability; below it C.")
    discount_ladder: list[int] = Field(default=list(DEFAULT_LADDER), description="Discounts on offer, in %.")
    uplift: dict[str, dict[str, float]] = Field(
        default={b: {str(d): u for d, u in t.items()} for b, t in DEFAULT_UPLIFT_BY_BUCKET.items()},
        description="Per bucket: discount % -> share of would-be churners the discount keeps. "
        "Buckets without a table get no offer.",
    )
    horizon_months: float = Field(default=DEFAULT_HORIZON_MONTHS, description="Months of revenue a retained member is worth.")

    def policy(self) -> ScoringPolicy:
        return ScoringPolicy(
            a_threshold=self.a_threshold,
            b_threshold=self.b_threshold,
            ladder=tuple(self.discount_ladder),
            uplift_by_bucket={b: {int(d): u for d, u in t.items()} for b, t in self.uplift.items()},
            horizon_months=self.horizon_months,
        )


@dg.asset(
    key=CHURN_SCORES_KEY,
    partitions_def=weekly_partitions,
    group_name="scoring",
    kinds={"duckdb", "lightgbm"},
    pool="duckdb_warehouse",
    deps=[SCORING_FEATURES_KEY, PRODUCTION_MODEL_KEY],
    description="Churn probability, bucket, action, reasons (A/B) and discount (B) per expiring member.",
)
def churn_scores(context: dg.AssetExecutionContext, config: ScoringConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    week = week_of(context.partition_key)
    policy = config.policy()  # validates thresholds before any work
    with warehouse.get_connection() as con:
        features = _read_week(con, FEATURES_TABLE, week)
    if features is None:
        raise dg.Failure(f"{FEATURES_TABLE} does not exist: materialise scoring/scoring_features for {week} first.")
    model, version = load_production_model()
    scores = score_members(features, model, str(version), week, policy)
    with warehouse.get_connection() as con:
        replace_partition(con, SCORES_TABLE, scores, "week_start", week)
    counts = scores["bucket"].value_counts().reindex(list(BUCKETS), fill_value=0)
    extra = {f"bucket_{b}": dg.MetadataValue.int(int(counts[b])) for b in BUCKETS}
    extra.update({
        "mean_churn_probability": dg.MetadataValue.float(float(scores["churn_probability"].mean()) if len(scores) else 0.0),
        "offers": dg.MetadataValue.int(int((scores["discount_pct"] > 0).sum())),
        "model_version": dg.MetadataValue.text(str(version)),
        "a_threshold": dg.MetadataValue.float(policy.a_threshold),
        "b_threshold": dg.MetadataValue.float(policy.b_threshold),
    })
    context.log.info(f"week {week}: {len(scores)} members scored with model version {version}: {counts.to_dict()}")
    return dg.MaterializeResult(metadata=frame_metadata(scores, extra=extra))


def _thresholds(instance: dg.DagsterInstance, partition: str) -> tuple[float, float]:
    """The thresholds the scores of this week were bucketed with (for the chart)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHURN_SCORES_KEY, asset_partitions=[partition]), limit=1
    ).records
    meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
    a, b = meta.get("a_threshold"), meta.get("b_threshold")
    return (a.value if a else A_THRESHOLD, b.value if b else B_THRESHOLD)


@dg.asset(
    key=REPORT_KEY,
    partitions_def=weekly_partitions,
    group_name="scoring",
    kinds={"html", "email"},
    pool="duckdb_warehouse",  # reads the DuckDB file, which locks out writers in other processes
    deps=[CHURN_SCORES_KEY],
    description="Weekly HTML report and at_risk_members.csv for marketing, e-mailed when SMTP is set.",
)
def weekly_churn_report(
    context: dg.AssetExecutionContext, warehouse: Warehouse, smtp: SmtpResource
) -> dg.MaterializeResult:
    week = week_of(context.partition_key)
    with warehouse.get_connection() as con:
        scores = _read_week(con, SCORES_TABLE, week)
        previous = _read_week(con, SCORES_TABLE, week - dt.timedelta(days=7))
    if scores is None:
        raise dg.Failure(f"{SCORES_TABLE} does not exist: materialise scoring/churn_scores for {week} first.")
    if previous is not None and previous.empty:
        previous = None
    a_threshold, b_threshold = _thresholds(context.instance, context.partition_key)
    out_dir = paths_from_env().reports / "weekly" / str(week)
    files = build_report(scores, previous, week, out_dir, a_threshold, b_threshold)
    metadata = {
        "summary": dg.MetadataValue.md(files.markdown),
        "html_report": dg.MetadataValue.path(str(files.html_path)),
        "csv": dg.MetadataValue.path(str(files.csv_path)),
        "emailed": dg.MetadataValue.bool(False),
    }
    if smtp.enabled:
        counts = scores["bucket"].value_counts()
        subject = (
            f"Churn report, week of {week}: {int(counts.get('A', 0))} to call, "
            f"{int(counts.get('B', 0))} to offer a discount"
        )
        try:
            send_report(smtp, files.html_path, files.csv_path, subject)
        except ReportDeliveryError as exc:
            raise dg.Failure(
                description=f"{exc} Report kept at {files.html_path}.",
                metadata={k: v for k, v in metadata.items() if k != "emailed"},
            ) from None
        metadata["emailed"] = dg.MetadataValue.bool(True)
        metadata["recipients"] = dg.MetadataValue.int(len(recipient_list(smtp.recipients)))
        context.log.info(f"report for {week} e-mailed to {len(recipient_list(smtp.recipients))} recipient(s)")
    else:
        context.log.info(f"SMTP not configured: report for {week} written to {out_dir} only")
    return dg.MaterializeResult(metadata=metadata)


scoring_assets = [scoring_features, churn_scores, weekly_churn_report]

weekly_scoring_job = dg.define_asset_job(
    "weekly_scoring_job",
    # the drift report is part of the weekly run (by key: monitoring depends on scoring, not the reverse)
    selection=dg.AssetSelection.assets(*scoring_assets) | dg.AssetSelection.assets(dg.AssetKey(["monitoring", "drift_report"])),
    description="Score the members expiring in the 30 days from a Monday, write and send the report, check drift.",
)


def _monday_of(moment: dt.datetime) -> str:
    day = moment.date()
    return (day - dt.timedelta(days=day.weekday())).isoformat()


@dg.schedule(
    name="weekly_scoring_schedule",
    job=weekly_scoring_job,
    cron_schedule="0 6 * * 1",
    execution_timezone=os.environ.get("CHURN_TIMEZONE", "UTC"),
    description="Mondays 06:00 (CHURN_TIMEZONE): score the week starting that Monday.",
)
def weekly_scoring_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    # the week that starts today, scored as of today (not the week that just ended);
    # that needs weekly_partitions(end_offset=1), else today's week is not a partition yet
    key = _monday_of(context.scheduled_execution_time)
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
        exists = weekly_partitions.has_partition_key(key)
    if not exists:
        raise dg.DagsterInvariantViolationError(
            f"week {key} is not a weekly partition yet: weekly_partitions needs end_offset=1 "
            "so the week starting today can be scored on its Monday"
        )
    return dg.RunRequest(run_key=key, partition_key=key)


scoring_jobs = [weekly_scoring_job]
scoring_schedules = [weekly_scoring_schedule]
