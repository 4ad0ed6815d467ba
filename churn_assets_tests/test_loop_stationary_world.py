"""The closed loop on a stationary world: nothing is requested, the first model stays in
production (loop_replay: the demo's own code, real Dagster runs)."""
import pytest

from churn_assets_tests.loop_replay import replay

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`


def test_stationary_world_requests_no_retraining(data_dir):
    summary, weeks, promoted, sensor_runs = replay(9, [("none", "2016-05")])
    assert len(weeks) >= 5, weeks  # the Mondays of January; December's labels become final on the 30th
    assert (weeks.decision == "none").all(), weeks
    assert not sensor_runs
    assert len(promoted) == 1  # the first model, never replaced
    assert "stationary world: " in summary.render()
