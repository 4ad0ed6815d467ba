"""compute_drift / prediction_drift with the real Evidently 0.7 on small frames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_assets.monitoring.drift import EMPTY_BOTH, EMPTY_ONE_SIDE, compute_drift, prediction_drift, sample_rows

NUMERIC = ["secs_30d", "active_days_30d", "last_amount_paid", "age"]
CATEGORICAL = ["city", "registered_via"]


def members(n: int, seed: int, secs_shift: float = 0.0, channel_mix=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "secs_30d": rng.gamma(2.0, 20_000, n) + secs_shift,
        "active_days_30d": rng.integers(0, 31, n).astype(float),
        "last_amount_paid": rng.choice([99.0, 129.0, 149.0], n),
        "age": np.where(rng.random(n) < 0.5, np.nan, rng.normal(29, 7, n)),  # half missing, like bd
        "city": rng.choice(["1", "13", "5", None], n, p=[0.5, 0.2, 0.2, 0.1]),
        "registered_via": rng.choice(["7", "9", "3"], n, p=list(channel_mix)),
    })


def test_same_distribution_has_no_drift(tmp_path):
    html = tmp_path / "drift" / "2017-03-06.html"
    result = compute_drift(members(3000, 1), members(3000, 2), NUMERIC, CATEGORICAL, html_path=html)
    assert result.n_columns == 6
    assert result.n_drifted == 0 and result.drift_share == 0.0
    assert not result.columns["drifted"].any()
    assert sorted(result.columns["column_name"]) == sorted(NUMERIC + CATEGORICAL)
    assert html.exists() and html.stat().st_size > 10_000 and result.html_path == html


def test_shifted_columns_drift_and_come_first():
    ref = members(3000, 1)
    cur = members(3000, 2, secs_shift=40_000, channel_mix=(0.1, 0.3, 0.6))
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL)
    drifted = set(result.columns.loc[result.columns["drifted"], "column_name"])
    assert drifted == {"secs_30d", "registered_via"}
    assert result.n_drifted == 2 and result.drift_share == pytest.approx(2 / 6)
    assert set(result.columns["column_name"].head(2)) == drifted  # most drifted first
    assert list(result.columns.columns) == ["column_name", "method", "score", "threshold", "drifted"]


def test_small_samples_use_p_value_tests():
    # Evidently switches to K-S / chi-square at <= 1000 rows: verdicts still line up
    ref, cur = members(400, 1), members(400, 2, secs_shift=40_000)
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL)
    row = result.columns.set_index("column_name").loc["secs_30d"]
    assert "p_value" in row["method"] and row["drifted"] and row["score"] < row["threshold"]
    assert result.columns["column_name"].iloc[0] == "secs_30d"


def test_sampling_is_seeded_and_bounded():
    ref, cur = members(6000, 1), members(6000, 2, secs_shift=5_000)
    a = compute_drift(ref, cur, NUMERIC, CATEGORICAL, sample_size=1500, seed=7)
    b = compute_drift(ref, cur, NUMERIC, CATEGORICAL, sample_size=1500, seed=7)
    assert a.reference_rows == a.current_rows == 1500
    pd.testing.assert_frame_equal(a.columns, b.columns)
    assert len(sample_rows(ref, 10_000, 0)) == 6000


def test_all_null_columns_are_decided_without_evidently():
    ref, cur = members(1500, 1), members(1500, 2)
    ref["age"], cur["age"] = np.nan, np.nan          # never known: not drift
    cur["active_days_30d"] = np.nan                  # listening logs stopped: drift
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL)
    by_name = result.columns.set_index("column_name")
    assert by_name.loc["age", "method"] == EMPTY_BOTH and not by_name.loc["age", "drifted"]
    assert by_name.loc["active_days_30d", "method"] == EMPTY_ONE_SIDE and by_name.loc["active_days_30d", "drifted"]
    assert result.n_drifted == 1 and result.n_columns == 6


def test_missing_column_or_empty_frame_is_an_error():
    with pytest.raises(ValueError, match="lacks columns"):
        compute_drift(members(100, 1), members(100, 2).drop(columns="city"), NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="empty"):
        compute_drift(members(100, 1), members(0, 2), NUMERIC, CATEGORICAL)


def test_prediction_drift():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"churn_probability": rng.beta(2, 8, 3000), "msno": "x"})
    same = prediction_drift(ref, pd.Series(rng.beta(2, 8, 3000)))
    moved = prediction_drift(ref, pd.DataFrame({"churn_probability": rng.beta(4, 4, 3000)}))
    assert same["column_name"] == "churn_probability" and not same["drifted"]
    assert moved["drifted"] and moved["score"] > same["score"]
