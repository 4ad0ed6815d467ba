"""Mondays 07:00: the serving drift of the week that just ended (its requests are all logged)."""
import datetime as dt
import os

import dagster as dg

from churn_assets.defs.monitoring.serving_drift import serving_drift_job


def previous_monday(moment: dt.datetime) -> str:
    day = moment.date()
    return (day - dt.timedelta(days=day.weekday() + 7)).isoformat()


@dg.schedule(
    name="serving_drift_schedule",
    job=serving_drift_job,
    cron_schedule="0 7 * * 1",
    execution_timezone=os.environ.get("CHURN_TIMEZONE", "UTC"),
    description="Mondays 07:00 (CHURN_TIMEZONE): drift of the online requests logged in the week that just ended.",
)
def serving_drift_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    key = previous_monday(context.scheduled_execution_time)
    return dg.RunRequest(run_key=key, partition_key=key)


monitoring_schedules = [serving_drift_schedule]
