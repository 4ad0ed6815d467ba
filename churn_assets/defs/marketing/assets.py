"""The retention experiment's weekly treatments: who got what, when, from which score; and
its monthly effect once the target month's labels are final.

Thin assets: read the week's scores (with the free/trial columns) and the earlier weeks'
treatments, call churn_assets.marketing.treatments, write the week with replace_partition,
publish it, and report the treated/control balance of the experiment to date as a check.
retention_effect reads the treatments expiring in the month with their labels, calls
churn_assets.marketing.effect, writes and publishes the month and plots it.
"""
import base64
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from churn_assets.analytics.publish import publish
from churn_assets.core.buckets import BUCKETS
from churn_assets.dates import week_of
from churn_assets.defs.finality import final_month_or_none
from churn_assets.defs.keys import CHURN_SCORES, LABELS, MARKETING_TREATMENTS, RETENTION_EFFECT, SCORING_FEATURES
from churn_assets.defs.marketing.config import RetentionEffectConfig, TreatmentsConfig
from churn_assets.defs.metadata import frame_metadata
from churn_assets.defs.partitions import monthly_partitions, weekly_partitions
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.marketing.balance import MAX_ABS_SMD, MIN_CHI2_P, Balance, control_balance, experiment_to_date
from churn_assets.marketing.effect import (
    EffectResult, criterion_streak, effect_chart_png, effect_markdown, measure_effect,
)
from churn_assets.marketing.queries import (
    EFFECT_TABLE, TREATMENTS_TABLE, read_earlier_treatments, read_effect_inputs, read_month_summaries,
    read_scored_week,
)
from churn_assets.marketing.treatments import arm_counts, assign_treatments
from churn_assets.sql import replace_partition

CONTROL_BALANCE = "control_balance"


def _balance_result(balance: Balance, week_balance: Balance) -> dg.AssetCheckResult:
    metadata = {"n_treated": balance.n_treated, "n_control": balance.n_control, "judged": balance.judged,
                "max_abs_smd": MAX_ABS_SMD, "min_chi2_p": MIN_CHI2_P}
    for name, value in (("smd", balance.smd), ("chi2_p", balance.chi2_p), ("week_smd", week_balance.smd)):
        if value is not None:
            metadata[name] = float(value)
    return dg.AssetCheckResult(check_name=CONTROL_BALANCE, passed=balance.passed,
                               severity=dg.AssetCheckSeverity.WARN, description="; ".join(balance.reasons),
                               metadata=metadata)


def _treatments_metadata(rows: pd.DataFrame, scored: int, config: TreatmentsConfig) -> dict:
    extra = {name: dg.MetadataValue.int(n) for name, n in arm_counts(rows, BUCKETS).items()}
    extra.update({
        "scored": dg.MetadataValue.int(scored),
        "new_contacts": dg.MetadataValue.int(len(rows)),
        "suppressed": dg.MetadataValue.int(scored - len(rows)),
        "free_or_trial": dg.MetadataValue.int(int(rows["free_or_trial"].sum())),
        "control_share": dg.MetadataValue.float(config.control_share),
    })
    return frame_metadata(rows, extra=extra)


@dg.asset(
    key=MARKETING_TREATMENTS,
    partitions_def=weekly_partitions,
    group_name="marketing",
    kinds={"duckdb"},
    pool="duckdb_warehouse",
    deps=[CHURN_SCORES, SCORING_FEATURES],
    check_specs=[dg.AssetCheckSpec(
        CONTROL_BALANCE, asset=MARKETING_TREATMENTS, blocking=False,
        description=f"Treated vs control over the experiment to date: churn_probability |SMD| < {MAX_ABS_SMD} "
        f"and bucket shares (chi-square p > {MIN_CHI2_P}). A warning: the treatments are written either way.",
    )],
    description="This week's new contacts (once per member and expiry cycle): arm (treated or the hash-drawn "
    "hold-out), action, discount, and the score and model version they came from.",
)
def treatments(
    context: dg.AssetExecutionContext, config: TreatmentsConfig, warehouse: Warehouse, storage: Storage
) -> dg.MaterializeResult:
    week = week_of(context.partition_key)
    with warehouse.get_connection() as con:
        scores = read_scored_week(con, week)
        earlier = read_earlier_treatments(con, week)
    if scores is None:
        raise dg.Failure(f"scoring.churn_scores or scoring.scoring_features does not exist: "
                         f"materialise scoring/churn_scores for {week} first.")
    rows = assign_treatments(scores, earlier, config.control_share, config.salt)
    with warehouse.get_connection() as con:
        replace_partition(con, TREATMENTS_TABLE, rows, "week_start", week, dates=["week_start", "membership_expire_date"])
        publish(con, {TREATMENTS_TABLE: week}, storage.paths)
    balance = control_balance(experiment_to_date(earlier, rows))
    context.log.info(f"week {week}: {len(rows)} new contacts of {len(scores)} scored; {'; '.join(balance.reasons)}")
    return dg.MaterializeResult(metadata=_treatments_metadata(rows, len(scores), config),
                                check_results=[_balance_result(balance, control_balance(rows))])


# ---------------------------------------------------------------- the effect, monthly

_SUMMARY_FLOATS = ("churn_rate_treated", "churn_rate_control", "effect", "ci_low", "ci_high", "relative_reduction",
                   "rr_ci_low", "rr_ci_high", "incremental_retained", "net_revenue")


def _effect_metadata(result: EffectResult, history: pd.DataFrame, config: RetentionEffectConfig, chart) -> dict:
    """The month row's numbers as floats (plotted over months in the UI), the criterion, the
    table and the chart."""
    summary = result.summary
    streak = criterion_streak(history, summary["target_month"], config.min_relative_reduction)
    extra = {name: dg.MetadataValue.float(float(summary[name])) for name in _SUMMARY_FLOATS if pd.notna(summary[name])}
    image = base64.b64encode(chart.read_bytes()).decode()
    extra.update({
        "n_treated": dg.MetadataValue.int(int(summary["n_treated"])),
        "n_control": dg.MetadataValue.int(int(summary["n_control"])),
        "rows_in": dg.MetadataValue.int(result.rows_in), "matched": dg.MetadataValue.int(result.matched),
        "unmatched": dg.MetadataValue.int(result.unmatched), "unmeasured": dg.MetadataValue.int(result.unmeasured),
        "criterion_held_3_months": dg.MetadataValue.bool(streak >= config.criterion_months),
        "criterion_streak_months": dg.MetadataValue.int(streak),
        "criterion_months": dg.MetadataValue.int(config.criterion_months),
        "min_relative_reduction": dg.MetadataValue.float(config.min_relative_reduction),
        "effects": dg.MetadataValue.md(effect_markdown(result.rows)),
        "chart": dg.MetadataValue.md(f"![treated vs control churn](data:image/png;base64,{image})"),
        "chart_path": dg.MetadataValue.path(str(chart)),
        "notes": dg.MetadataValue.text("; ".join(result.notes) or "none"),
    })
    return frame_metadata(result.rows, extra=extra)


@dg.asset(
    key=RETENTION_EFFECT,
    partitions_def=monthly_partitions,
    group_name="marketing",
    kinds={"duckdb", "matplotlib"},
    pool="duckdb_warehouse",
    # weekly treatments -> monthly: the weeks whose contacts expire in the month (plain deps)
    deps=[LABELS, MARKETING_TREATMENTS, CHURN_SCORES, SCORING_FEATURES],
    output_required=False,
    description=(
        "Churn of the treated arm against the hold-out for the treatments expiring in the target month, "
        "once its labels are final (before that nothing is written and the partition stays empty): per "
        "bucket, per action and discount rung (against the control the same rule would have given that "
        "rung) and for the month (control weighted by the treated bucket mix), with 95 % intervals, "
        "incremental members retained, net revenue after the discount cost, and whether the relative "
        "reduction has reached the business criterion for successive months."
    ),
)
def retention_effect(
    context: dg.AssetExecutionContext, config: RetentionEffectConfig, warehouse: Warehouse, storage: Storage
) -> Iterator[dg.MaterializeResult]:
    with warehouse.get_connection() as con:
        if (month := final_month_or_none(context, con)) is None:
            return
        inputs = read_effect_inputs(con, month)
    if inputs is None or inputs.empty:
        context.log.warning(f"no treatments expire in {month:%Y-%m} (or no labels table): nothing written")
        return
    result = measure_effect(inputs, month, config.horizon_months, config.confidence)
    if not result.matched:
        context.log.warning(f"none of the {result.rows_in} treatments expiring in {month:%Y-%m} has a label: "
                            "materialise features/labels for the month first; nothing written")
        return
    with warehouse.get_connection() as con:
        replace_partition(con, EFFECT_TABLE, result.rows, "target_month", month, dates=["target_month"])
        publish(con, {EFFECT_TABLE: month}, storage.paths)
        history = read_month_summaries(con)
    for note in result.notes:
        context.log.warning(note)
    chart = effect_chart_png(result.rows, storage.reports / "retention" / f"{month:%Y-%m}.png", config.confidence)
    yield dg.MaterializeResult(metadata=_effect_metadata(result, history, config, chart))


marketing_assets = [treatments]  # weekly: what weekly_scoring_job selects
effect_assets = [retention_effect]  # monthly: in performance_job
