"""The blocking automated-tests check on ml/churn_model: a failure stops the run before
ml/production_model, so a bad version never reaches acceptance."""
import dagster as dg

from churn_assets.defs.keys import CHURN_MODEL
from churn_assets.defs.model.assets import latest_model_version
from churn_assets.defs.model.config import gate_settings
from churn_assets.defs.model.metadata import automated_tests_metadata
from churn_assets.defs.resources import ModelRegistry, Warehouse
from churn_assets.model.names import STAGING
from churn_assets.model.promotion_log import promotion_row, record_promotion


@dg.asset_check(
    asset=CHURN_MODEL,
    blocking=True,
    pool="duckdb_warehouse",
    description="Signature, sane probabilities, floors relative to the base rate (log loss below the constant "
    "forecast's, AUC above chance, by margins), beats the logistic baseline. "
    "Pass moves alias staging; every decision lands in ml.model_promotions.",
)
def churn_model_automated_tests(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, registry: ModelRegistry
) -> dg.AssetCheckResult:
    version = latest_model_version(context.instance)
    decision = registry.automated_tests(version, **gate_settings(registry.version_tags(version)))
    with warehouse.get_connection() as con:
        record_promotion(con, promotion_row(version, STAGING, decision))
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(decision.reasons),
        metadata=automated_tests_metadata(version, registry.alias_version(STAGING), decision),
    )


model_checks = [churn_model_automated_tests]
