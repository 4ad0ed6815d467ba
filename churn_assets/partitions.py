"""Monthly drops (keys YYYY-MM-01) and Monday-starting scoring weeks.

Partitions start with the public data set (2015-01) so both it and the
synthetic world (2016-05 on) fit; CHURN_FIRST_MONTH / CHURN_FIRST_WEEK move it.
"""
from __future__ import annotations

import os
import re
import warnings
from datetime import date

import dagster as dg


FIRST_MONTH = os.environ.get("CHURN_FIRST_MONTH", "2015-01-01")
FIRST_WEEK = os.environ.get("CHURN_FIRST_WEEK", "2015-01-05")  # a Monday

monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH)
# end_offset=1: the week starting today is a partition on its Monday, so the
# Monday schedule scores the coming week rather than the one that just ended.
weekly_partitions = dg.WeeklyPartitionsDefinition(start_date=FIRST_WEEK, day_offset=1, end_offset=1)  # 1 = Monday

def window_mapping(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    """Upstream partitions from start_offset to end_offset around the downstream one;
    those before the first partition are simply absent (not an error)."""
    with warnings.catch_warnings():  # allow_nonexistent_upstream_partitions is marked beta
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(
            start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
        )


_MONTH_KEY = re.compile(r"^\d{4}-\d{2}-01$")
_DAY_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def month_of(key: str) -> date:
    """Parse a monthly partition key, refusing anything that is not YYYY-MM-01
    (keys reach SQL and file paths, so they are validated before use)."""
    if not _MONTH_KEY.match(key):
        raise ValueError(f"monthly partition key must look like YYYY-MM-01, got {key!r}")
    return date.fromisoformat(key)


def week_of(key: str) -> date:
    """Parse a weekly partition key: a Monday as YYYY-MM-DD."""
    if not _DAY_KEY.match(key):
        raise ValueError(f"weekly partition key must look like YYYY-MM-DD, got {key!r}")
    day = date.fromisoformat(key)
    if day.weekday() != 0:
        raise ValueError(f"weekly partition key must be a Monday, got {key} ({day:%A})")
    return day


def drop_folder_name(month: date) -> str:
    return f"{month:%Y-%m}"
