"""The monitoring domain's jobs (the weekly drift report runs inside weekly_scoring_job)."""
import dagster as dg

from churn_assets.defs.keys import RETENTION_EFFECT
from churn_assets.defs.monitoring.assets import model_performance

performance_job = dg.define_asset_job(
    "performance_job",
    # monthly, partitioned like the assets: both judge a target month once its labels are final
    selection=dg.AssetSelection.assets(model_performance) | dg.AssetSelection.assets(RETENTION_EFFECT),
    description="Realised model performance and the retention experiment's effect for a target month once "
    "its labels are final.",
)
