"""The closed loop on a world where the sign-up channel mix shifts and prices rise in December:
the drift monitor flags it within the first two scored weeks, the sensor asks for training only
when new final labels exist (one run per data window, at most one retune each), every promoted
version differs from its predecessor, and a promoted model learns the labels of the shifted
months, after which the drift settles and nothing more is requested (loop_replay: the demo's own
code, real Dagster runs)."""
import datetime as dt

import pytest

from churn_assets.model.names import TAG_FINGERPRINT
from churn_assets.model.versions import trained_through
from churn_assets_tests.loop_replay import replay

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`


def test_shift_and_price_rise_world_retrains_itself(data_dir):
    # to 20 March: the model that learned January (final 27 Feb) scores from 13 March
    summary, weeks, promoted, sensor_runs = replay(11, [("channel_shift", "2016-12"), ("price_rise", "2016-12")],
                                                   until=dt.date(2017, 3, 20))
    failed = [r for r in summary.runs if not r["success"] and r["job"] not in ("train_job", "retune_job")]
    assert not failed, failed  # a refused challenger fails its gate; nothing else may fail
    assert weeks.week_start.iloc[0] == "2017-01-02", weeks  # first model once Aug-Nov are final (30 Dec)

    # flagged within the first two scored weeks after the injection
    assert (weeks.level.head(2) != "none").any(), weeks
    # the sensor asked only with new final labels: one run per job and data window, at most one retune each
    assert sensor_runs, "the sensor requested no run after the shift"
    windows = [(r["job"], r["tags"]["churn/data_window"]) for r in sensor_runs]
    assert len(windows) == len(set(windows)), windows
    # every production version differs from its predecessor, and one learned the shifted months
    fingerprints = [t[TAG_FINGERPRINT] for t in promoted]
    assert all(a != b for a, b in zip(fingerprints, fingerprints[1:])), fingerprints
    assert len(promoted) >= 2 and max(trained_through(t) for t in promoted) >= "2016-12-01", promoted
    # once production has learned the shifted months the drift settles: the last two weeks under
    # the newest version ask for nothing, and the sensor requested nothing in them
    last = weeks.tail(2)
    assert (last.model_version == last.model_version.iloc[0]).all() and (last.decision == "none").all(), weeks
    assert (last.level == "none").all(), weeks
    assert not [r for r in sensor_runs if r["week"] >= last.week_start.iloc[0]], sensor_runs

    text = summary.render()
    assert "the loop's story" in text and "first week flagged: 2017-01" in text, text
