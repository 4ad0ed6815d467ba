"""Mondays 06:00: score the week that starts that day."""
import datetime as dt
import os

import dagster as dg

from churn_assets.defs.partitions import weekly_partitions
from churn_assets.defs.scoring.jobs import weekly_scoring_job


def monday_of(moment: dt.datetime) -> str:
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
    key = monday_of(context.scheduled_execution_time)
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
        exists = weekly_partitions.has_partition_key(key)
    if not exists:
        raise dg.DagsterInvariantViolationError(
            f"week {key} is not a weekly partition yet: weekly_partitions needs end_offset=1 "
            "so the week starting today can be scored on its Monday"
        )
    return dg.RunRequest(run_key=key, partition_key=key)


scoring_schedules = [weekly_scoring_schedule]
