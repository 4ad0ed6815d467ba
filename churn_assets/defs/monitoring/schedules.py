"""Mondays 07:00: the serving drift of the week that just ended (its requests are all logged)."""
import datetime as dt
import os

import dagster as dg

from churn_assets.defs.monitoring.serving_drift import serving_drift_job
from churn_assets.defs.scoring.schedules import monday_of


@dg.schedule(
    name="serving_drift_schedule",
    job=serving_drift_job,
    cron_schedule="0 7 * * 1",
    execution_timezone=os.environ.get("CHURN_TIMEZONE", "UTC"),
    description="Mondays 07:00 (CHURN_TIMEZONE): drift of the online requests logged in the week that just ended.",
)
def serving_drift_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    key = (dt.date.fromisoformat(monday_of(context.scheduled_execution_time)) - dt.timedelta(weeks=1)).isoformat()
    return dg.RunRequest(run_key=key, partition_key=key)


monitoring_schedules = [serving_drift_schedule]
