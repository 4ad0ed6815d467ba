"""Drift numbers (Evidently's tests), weights, calibration, HTML and the monitoring tables, on small frames."""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.monitoring.drift import (
    EMPTY_BOTH, EMPTY_ONE_SIDE, add_missing_columns, cached_thresholds, calibrate_thresholds, compute_drift,
    feature_weights, prediction_drift, previous_week_row, reference_months, render_drift_html, render_wanted,
    resolve_methods, sample_rows, store_thresholds, threshold_map, value_drifts, window_weeks,
)

NUMERIC = ["secs_30d", "active_days_30d", "last_amount_paid", "age"]
CATEGORICAL = ["city", "registered_via"]
FEATURES = NUMERIC + CATEGORICAL


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


def training_window(n_per_month: int = 1500, wobble: float = 0.0) -> pd.DataFrame:
    """Four training months with a target_month column; `wobble` moves secs_30d's mean from
    month to month (a column noisy by nature, not drifting)."""
    frames = []
    for k, month in enumerate(pd.date_range("2016-09-01", periods=4, freq="MS").date):
        frame = members(n_per_month, 10 + k, secs_shift=wobble * (k % 2))
        frames.append(frame.assign(target_month=month))
    return pd.concat(frames, ignore_index=True)


def test_same_distribution_has_no_drift():
    result = compute_drift(members(3000, 1), members(3000, 2), NUMERIC, CATEGORICAL)
    assert result.n_columns == 6
    assert result.n_drifted == 0 and result.drift_share == 0.0 and result.column_share == 0.0
    assert sorted(result.columns["column_name"]) == sorted(FEATURES)
    # Evidently's choice above 1000 reference rows: distances
    assert set(result.columns["method"]) == {"wasserstein", "jensenshannon"}
    assert (result.columns["threshold"] == result.columns["default_threshold"]).all()


def test_shifted_columns_drift_and_come_first():
    ref = members(3000, 1)
    cur = members(3000, 2, secs_shift=40_000, channel_mix=(0.1, 0.3, 0.6))
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL)
    drifted = set(result.columns.loc[result.columns["drifted"], "column_name"])
    assert drifted == {"secs_30d", "registered_via"}
    # equal weights by default: the weighted share is the plain share
    assert result.n_drifted == 2 and result.drift_share == pytest.approx(2 / 6) == result.column_share
    assert set(result.columns["column_name"].head(2)) == drifted  # most drifted first
    assert list(result.columns.columns) == ["column_name", "method", "score", "threshold", "default_threshold",
                                            "drifted", "weight"]


def test_drift_share_is_weighted_by_importance():
    ref = members(3000, 1)
    cur = members(3000, 2, secs_shift=40_000, channel_mix=(0.1, 0.3, 0.6))
    importance = pd.DataFrame({"feature": ["secs_30d", "active_days_30d", "registered_via", "not_a_column"],
                               "gain": [10.0, 70.0, 20.0, 500.0]})
    weights, source = feature_weights(importance, FEATURES)
    assert source == "gain" and weights.sum() == pytest.approx(1.0)
    assert weights["age"] == 0.0 and weights["city"] == 0.0  # no importance: weighs nothing
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL, weights=weights)
    assert result.drift_share == pytest.approx(0.3 / 1.0)  # secs_30d + registered_via: (10 + 20) / 100
    assert result.column_share == pytest.approx(2 / 6)
    assert result.columns["column_name"].iloc[0] == "registered_via"  # the heavier drifted column first


@pytest.mark.parametrize("importance", [None, pd.DataFrame({"feature": ["secs_30d"], "gain": [0.0]}),
                                        pd.DataFrame({"feature": ["secs_30d"], "split": [3]})])
def test_missing_importance_falls_back_to_equal_weights(importance):
    weights, source = feature_weights(importance, FEATURES)
    assert source == "equal" and np.allclose(weights, 1 / 6)


def test_numbers_are_evidentlys_own_verdicts(tmp_path):
    """The fast path scores exactly what Evidently's ValueDrift metrics score in the rendered
    preset: same tests, same (per-column) thresholds, same samples."""
    ref = members(3000, 1)
    cur = members(3000, 2, secs_shift=8_000, channel_mix=(0.3, 0.3, 0.4))
    methods = resolve_methods(ref, NUMERIC, CATEGORICAL)
    thresholds = {"secs_30d": 0.5}  # raised far above its score: not drifted here
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL, methods=methods, thresholds=thresholds)
    html = tmp_path / "drift" / "2017-03-06.html"
    snapshot = render_drift_html(ref, cur, NUMERIC, CATEGORICAL, result, html)
    assert html.exists() and html.stat().st_size > 10_000
    evidently = value_drifts(snapshot).set_index("column_name").sort_index()
    ours = result.columns.set_index("column_name").sort_index()
    assert list(evidently.index) == list(ours.index)
    np.testing.assert_allclose(evidently["score"], ours["score"], rtol=1e-9)
    np.testing.assert_allclose(evidently["threshold"], ours["threshold"])
    assert (evidently["drifted"] == ours["drifted"]).all()
    assert ours.loc["registered_via", "drifted"] and not ours.loc["secs_30d", "drifted"]


def test_small_samples_use_p_value_tests():
    # Evidently switches to K-S / chi-square at <= 1000 reference rows: verdicts still line up
    ref, cur = members(400, 1), members(400, 2, secs_shift=40_000)
    result = compute_drift(ref, cur, NUMERIC, CATEGORICAL)
    row = result.columns.set_index("column_name").loc["secs_30d"]
    assert row["method"] == "ks" and row["drifted"] and row["score"] < row["threshold"]
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


def test_calibration_raises_the_threshold_of_a_noisy_column():
    reference = training_window(wobble=6_000)  # secs_30d moves by ~0.15 normed Wasserstein month to month
    methods = resolve_methods(reference, NUMERIC, CATEGORICAL)
    calibration = calibrate_thresholds(reference, NUMERIC, CATEGORICAL, methods, factor=1.5).set_index("column_name")
    assert (calibration["months"] == 4).all() and (calibration["weeks"] == 0).all()
    noisy = calibration.loc["secs_30d"]
    assert noisy["threshold"] == pytest.approx(1.5 * noisy["noise"]) and noisy["threshold"] > noisy["default_threshold"]
    stable = calibration.drop(index="secs_30d")  # only sampling noise: at or near Evidently's default
    assert (stable["threshold"] >= stable["default_threshold"]).all() and stable["threshold"].max() < noisy["threshold"] / 2

    # a week as noisy as the training months: drift with the default threshold, none with the calibrated one
    week = members(1500, 99, secs_shift=6_000)
    default = compute_drift(reference, week, NUMERIC, CATEGORICAL, methods=methods)
    calibrated = compute_drift(reference, week, NUMERIC, CATEGORICAL, methods=methods,
                               thresholds=threshold_map(calibration.reset_index()))
    assert "secs_30d" in set(default.columns.loc[default.columns["drifted"], "column_name"])
    assert calibrated.n_drifted == 0
    # a real move still drifts past the calibrated threshold
    moved = compute_drift(reference, members(1500, 98, secs_shift=40_000), NUMERIC, CATEGORICAL, methods=methods,
                          thresholds=threshold_map(calibration.reset_index()))
    assert set(moved.columns.loc[moved.columns["drifted"], "column_name"]) == {"secs_30d"}


def test_stationary_weeks_calibrate_what_months_cannot_show():
    reference = training_window()
    methods = resolve_methods(reference, NUMERIC, CATEGORICAL)
    # weeks shaped differently from calendar months in one column (like days_to_expiry)
    weeks = {dt.date(2016, 9, 5) + dt.timedelta(days=7 * k): members(1500, 50 + k, channel_mix=(0.35, 0.35, 0.3))
             for k in range(3)}
    months_only = calibrate_thresholds(reference, NUMERIC, CATEGORICAL, methods).set_index("column_name")
    with_weeks = calibrate_thresholds(reference, NUMERIC, CATEGORICAL, methods,
                                      stationary_weeks=weeks).set_index("column_name")
    assert months_only.loc["registered_via", "threshold"] == months_only.loc["registered_via", "default_threshold"]
    assert with_weeks.loc["registered_via", "week_noise"] > with_weeks.loc["registered_via", "month_noise"]
    assert with_weeks.loc["registered_via", "threshold"] == pytest.approx(1.5 * with_weeks.loc["registered_via", "week_noise"])
    assert (with_weeks["weeks"] == 3).all()


def test_p_value_thresholds_calibrate_downwards():
    reference = training_window(n_per_month=300, wobble=6_000)
    methods = resolve_methods(reference, NUMERIC, CATEGORICAL, num_method="ks")
    calibration = calibrate_thresholds(reference, NUMERIC, CATEGORICAL, methods).set_index("column_name")
    row = calibration.loc["secs_30d"]
    assert row["method"] == "ks" and row["threshold"] == pytest.approx(row["noise"] / 1.5)
    assert row["threshold"] < row["default_threshold"]  # a smaller p-value is needed to call it drift


def test_no_months_no_weeks_means_evidently_defaults():
    reference = members(2000, 1)  # an old run's reference: no target_month
    methods = resolve_methods(reference, NUMERIC, CATEGORICAL)
    assert calibrate_thresholds(reference, NUMERIC, CATEGORICAL, methods) is None
    assert threshold_map(None) == {}
    assert reference_months(reference) == []
    with pytest.raises(ValueError):
        calibrate_thresholds(training_window(), NUMERIC, CATEGORICAL, methods, factor=0.5)


def test_window_weeks_lie_inside_the_training_months():
    months = [dt.date(2016, 9, 1), dt.date(2016, 10, 1), dt.date(2016, 11, 1), dt.date(2016, 12, 1)]
    weeks = window_weeks(months)
    assert weeks[0] == dt.date(2016, 9, 5) and weeks[-1] == dt.date(2016, 11, 28)  # + 30 days <= 2017-01-01
    assert all(w.weekday() == 0 for w in weeks) and len(weeks) == 13
    assert window_weeks([]) == []


@pytest.mark.parametrize("mode, decision, expected", [
    ("auto", "none", False), ("auto", "retrain", True), ("auto", "retune", True),
    ("always", "none", True), ("never", "retune", False),
])
def test_html_only_when_needed(mode, decision, expected):
    assert render_wanted(mode, decision) is expected


def test_render_mode_is_checked():
    with pytest.raises(ValueError):
        render_wanted("sometimes", "none")


def test_prediction_drift():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"churn_probability": rng.beta(2, 8, 3000), "msno": "x"})
    same = prediction_drift(ref, pd.Series(rng.beta(2, 8, 3000)))
    moved = prediction_drift(ref, pd.DataFrame({"churn_probability": rng.beta(4, 4, 3000)}))
    assert same["column_name"] == "churn_probability" and not same["drifted"]
    assert moved["drifted"] and moved["score"] > same["score"] and moved["weight"] == 0.0


def test_thresholds_are_cached_per_version():
    con = duckdb.connect()
    reference = training_window(wobble=6_000)
    methods = resolve_methods(reference, NUMERIC, CATEGORICAL)
    calibration = calibrate_thresholds(reference, NUMERIC, CATEGORICAL, methods)
    assert cached_thresholds(con, "3", methods, 1.5, 5000) is None  # no table yet
    store_thresholds(con, "3", calibration, 1.5, 5000)
    back = cached_thresholds(con, "3", methods, 1.5, 5000)
    pd.testing.assert_frame_equal(back, calibration, check_dtype=False)
    assert cached_thresholds(con, "4", methods, 1.5, 5000) is None       # another version
    assert cached_thresholds(con, "3", methods, 2.0, 5000) is None       # another factor
    assert cached_thresholds(con, "3", {**methods, "secs_30d": "psi"}, 1.5, 5000) is None  # another test
    store_thresholds(con, "3", calibration, 1.5, 5000)  # re-stored, not duplicated
    assert con.execute("SELECT count(*) FROM monitoring.drift_thresholds").fetchone()[0] == len(calibration)


def test_old_tables_gain_new_columns_and_previous_week_is_read():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA monitoring")
    con.execute("CREATE TABLE monitoring.drift_reports (week_start DATE, model_version VARCHAR, drift_share DOUBLE, "
                "decision VARCHAR)")
    con.execute("INSERT INTO monitoring.drift_reports VALUES ('2017-02-27', '3', 0.2, 'retrain')")
    row = pd.DataFrame([{"week_start": dt.date(2017, 3, 6), "model_version": "3", "drift_share": 0.1,
                         "decision": "none", "level": "retrain", "column_share": 0.05}])
    assert add_missing_columns(con, "monitoring.drift_reports", row) == ["level", "column_share"]
    assert add_missing_columns(con, "monitoring.drift_reports", row) == []
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'drift_reports'").fetchall())
    assert types["level"] == "VARCHAR" and types["column_share"] == "DOUBLE"
    previous = previous_week_row(con, dt.date(2017, 3, 6))
    assert previous["decision"] == "retrain" and previous["model_version"] == "3" and pd.isna(previous["level"])
    assert previous_week_row(con, dt.date(2017, 3, 20)) is None
    assert previous_week_row(duckdb.connect(), dt.date(2017, 3, 6)) is None


# ---------------------------------------------------------------- the drift_report asset's steps


def spec_frame(n: int, seed: int) -> pd.DataFrame:
    """n rows of the model's real feature columns (the shape drift_week works on)."""
    from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS as CATS, FEATURE_COLUMNS as COLS

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.gamma(2.0, 10.0, n) for c in COLS})
    for c in CATS:
        frame[c] = rng.choice(["1", "2", "3"], n)
    return frame


def test_the_week_is_compared_against_the_version_most_rows_carry():
    from churn_assets.monitoring.drift_week import pick_version

    scores = pd.DataFrame({"model_version": ["2", "3", "3"], "churn_probability": [0.1, 0.2, 0.3]})
    version, theirs, counts = pick_version(scores)
    assert (version, list(theirs["churn_probability"]), counts) == ("3", [0.2, 0.3], {"3": 2, "2": 1})
    assert pick_version(scores.iloc[1:])[1].equals(scores.iloc[1:])


def test_stationary_weeks_are_read_where_scored_and_built_elsewhere():
    from churn_assets.core.feature_spec import FEATURE_COLUMNS as COLS
    from churn_assets.monitoring.drift_week import stationary_weeks

    scored, unscored, empty = dt.date(2016, 12, 5), dt.date(2016, 12, 12), dt.date(2016, 12, 19)
    frame = spec_frame(4, 0)
    frame["days_since_last_txn"] = [3.0, 31.0, 32.0, 200.0]  # two candidates, two long plans
    stored = frame.assign(week_start=scored)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA scoring; CREATE SCHEMA raw")
    con.execute("CREATE TABLE scoring.scoring_features AS SELECT * FROM stored")
    con.execute("CREATE TABLE raw.transactions (msno VARCHAR); CREATE TABLE raw.members (msno VARCHAR)")
    asked = []

    def build(con, week):
        asked.append(week)
        return frame if week == unscored else frame.iloc[:0]

    frames, found, built = stationary_weeks(con, [scored, unscored, empty], build)
    assert (found, built, asked) == (3, 2, [unscored, empty])
    assert set(frames) == {scored, unscored}  # a week without rows is left out
    assert all(len(f) == 2 and list(f.columns) == COLS for f in frames.values())  # candidates only
    con.execute("DROP TABLE raw.members")  # nothing to build from: only the scored week
    assert stationary_weeks(con, [scored, unscored], build)[1:] == (1, 0)
    assert stationary_weeks(con, [scored, unscored])[1:] == (1, 0)  # no builder given


def test_a_versions_calibration_is_made_once_then_read_back():
    from contextlib import nullcontext

    from churn_assets.monitoring.drift_week import calibration_for, methods_for

    months = pd.date_range("2016-09-01", periods=4, freq="MS").date
    reference = pd.concat([spec_frame(300, k).assign(target_month=m) for k, m in enumerate(months)], ignore_index=True)
    methods = methods_for(reference, None, None, 5000, 0)
    con = duckdb.connect()
    first = calibration_for(lambda: nullcontext(con), "3", reference, methods, 1.5, 5000, 0)
    assert first.fresh and first.source == "calibrated" and first.weeks["found"] == 0
    assert first.weeks["in_window"] == len(window_weeks(list(months)))
    first.store_if_fresh(con)
    again = calibration_for(lambda: nullcontext(con), "3", reference, methods, 1.5, 5000, 0)
    assert not again.fresh
    pd.testing.assert_frame_equal(again.table, first.table, check_dtype=False)
    flat = calibration_for(lambda: nullcontext(con), "4", reference.drop(columns="target_month"), methods, 1.5, 5000, 0)
    assert flat.table is None and flat.source == "evidently defaults"
    flat.store_if_fresh(con)  # nothing to store
    assert con.execute("SELECT DISTINCT model_version FROM monitoring.drift_thresholds").fetchall() == [("3",)]
