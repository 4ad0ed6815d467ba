"""The monitoring domain's jobs (the weekly drift report runs inside weekly_scoring_job)."""
import dagster as dg

from churn_assets.defs.monitoring.assets import model_performance

performance_job = dg.define_asset_job(
    "performance_job",
    selection=dg.AssetSelection.assets(model_performance),  # monthly: partitioned like the asset
    description="Realised model performance for a target month once its labels are final.",
)
