"""The closed loop on a stationary world: nothing is requested, the first model stays in
production (loop_replay: the demo's own code, real Dagster runs)."""
import datetime as dt

import pytest

from churn_assets_tests.loop_replay import replay

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`


def test_stationary_world_requests_no_retraining(data_dir):
    # the first model once Aug-Nov are final (30 Dec); three scored Mondays of January are enough
    # to see a false alarm and the sensor's answer to it, each further week costs ~10 s
    summary, weeks, promoted, sensor_runs = replay(9, [("none", "2016-05")], until=dt.date(2017, 1, 16))
    assert list(weeks.week_start) == ["2017-01-02", "2017-01-09", "2017-01-16"], weeks
    assert (weeks.decision == "none").all(), weeks
    assert not sensor_runs
    assert len(promoted) == 1  # the first model, never replaced
    assert "stationary world: " in summary.render()
