"""The retention experiment's weekly treatments: who got what, when, from which score.

Thin asset: read the week's scores (with the free/trial columns) and the earlier weeks'
treatments, call churn_assets.marketing.treatments, write the week with replace_partition,
publish it, and report the treated/control balance of the experiment to date as a check.
"""
import dagster as dg
import pandas as pd

from churn_assets.analytics.publish import publish
from churn_assets.core.buckets import BUCKETS
from churn_assets.dates import week_of
from churn_assets.defs.keys import CHURN_SCORES, MARKETING_TREATMENTS, SCORING_FEATURES
from churn_assets.defs.marketing.config import TreatmentsConfig
from churn_assets.defs.metadata import frame_metadata
from churn_assets.defs.partitions import weekly_partitions
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.marketing.balance import MAX_ABS_SMD, MIN_CHI2_P, Balance, control_balance, experiment_to_date
from churn_assets.marketing.queries import TREATMENTS_TABLE, read_earlier_treatments, read_scored_week
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


marketing_assets = [treatments]
