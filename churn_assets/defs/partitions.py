"""Monthly drops (keys YYYY-MM-01) and Monday-starting scoring weeks.

Partitions start with the public data set (2015-01) so both it and the
synthetic world (2016-05 on) fit; CHURN_FIRST_MONTH / CHURN_FIRST_WEEK move it.
Parsing the keys is pure and lives in churn_assets.dates.
"""
from __future__ import annotations

import os
import warnings

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
