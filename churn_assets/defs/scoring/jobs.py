"""The weekly scoring job: features, scores, the week's treatments, report, and the week's drift report."""
import dagster as dg

from churn_assets.defs.keys import DRIFT_REPORT
from churn_assets.defs.marketing.assets import marketing_assets
from churn_assets.defs.scoring.assets import scoring_assets

weekly_scoring_job = dg.define_asset_job(
    "weekly_scoring_job",
    # the drift report is part of the weekly run (by key: monitoring depends on scoring, not the reverse)
    selection=dg.AssetSelection.assets(*scoring_assets) | dg.AssetSelection.assets(*marketing_assets)
    | dg.AssetSelection.assets(DRIFT_REPORT),
    description="Score the members expiring in the 30 days from a Monday, write and send the report, check drift.",
)

scoring_jobs = [weekly_scoring_job]
