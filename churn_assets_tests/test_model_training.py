"""Model domain, pure parts: data loading, metrics, training, calibration, pyfunc, tuning."""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import ACTIONS
from churn_assets.core.feature_spec import FEATURE_COLUMNS, KEY_COLUMNS
from churn_assets.model.data import labelled_months, load_training_frame, treated_candidates
from churn_assets.model.pyfunc import PREDICT_COLUMNS, ChurnModel
from churn_assets_tests.toy_world import write_toy_world
from churn_assets.core.metrics import calibration_table, classification_metrics, expected_calibration_error
from churn_assets.model.training import (
    DEFAULT_PARAMS,
    RUNTIME_PARAMS,
    evaluate,
    resolve_threads,
    split_months,
    train_churn_model,
    training_fingerprint,
)
from churn_assets.model.tuning import SEARCH_SPACE, tune

MONTHS = [dt.date(2017, m, 1) for m in range(1, 6)]
TRAIN, VALID = MONTHS[1:4], MONTHS[4]


@pytest.fixture(scope="module")
def world():
    con = duckdb.connect()
    oracle = write_toy_world(con, MONTHS, 2500, seed=7)
    frame = load_training_frame(con, [*TRAIN, VALID])
    yield con, frame, oracle
    con.close()


@pytest.fixture(scope="module")
def result(world):
    return train_churn_model(world[1], None, TRAIN, VALID, seed=0)


# ---------------------------------------------------------------- data


def test_training_frame_leaves_out_treated_candidates(world):
    """Rows in = rows learned + treated left out: cycles an intervention reached (by expiry, or an
    expiry in the month) go; the control arm, the baseline e-mail and the uncontacted stay; no
    marketing table, nothing goes."""
    con, frame, _ = world
    labels = con.execute("SELECT msno, target_month, last_expire FROM features.labels WHERE target_month = ?",
                         [VALID]).df()
    month = frame[frame["target_month"] == VALID]
    assert len(month) > 300 and treated_candidates(con, [VALID]) == 0
    kept = labels[labels["msno"].isin(month["msno"])].reset_index(drop=True)
    treated_same, treated_moved, control = kept.iloc[:100], kept.iloc[100:150], kept.iloc[150:250]
    thanked = kept.iloc[250:300]
    rows = pd.concat([
        treated_same.assign(arm="treated", bucket="A", action=ACTIONS["A"], discount_pct=0,
                            membership_expire_date=treated_same["last_expire"]),
        treated_moved.assign(arm="treated", bucket="B", action=ACTIONS["B"], discount_pct=20,
                             membership_expire_date=pd.Timestamp(VALID) + pd.Timedelta(days=27)),
        control.assign(arm="control", bucket="B", action="none", discount_pct=0,
                       membership_expire_date=control["last_expire"]),
        thanked.assign(arm="treated", bucket="C", action=ACTIONS["C"], discount_pct=0,
                       membership_expire_date=thanked["last_expire"]),
    ])[["msno", "membership_expire_date", "bucket", "arm", "action", "discount_pct"]]
    con.execute("CREATE SCHEMA IF NOT EXISTS marketing")
    con.execute("CREATE TABLE marketing.treatments AS SELECT * FROM rows")
    try:
        again = load_training_frame(con, [*TRAIN, VALID])
        assert treated_candidates(con, [*TRAIN, VALID]) == 150
        assert len(again) == len(frame) - 150
        left = set(frame["msno"][frame["target_month"] == VALID]) - set(again["msno"][again["target_month"] == VALID])
        assert left == set(treated_same["msno"]) | set(treated_moved["msno"])
        assert set(control["msno"]) | set(thanked["msno"]) <= set(again["msno"])
        # the hold-out of A/B stands for the 150 intervened beside its 100: weight 250 / 100
        weight = again[again["target_month"] == VALID].set_index("msno")["sample_weight"]
        assert (weight[list(control["msno"])] == 2.5).all() and (weight.drop(list(control["msno"])) == 1.0).all()
    finally:
        con.execute("DROP TABLE marketing.treatments")


def test_training_frame_has_contract_columns(world):
    _, frame, _ = world
    assert list(frame.columns) == [*KEY_COLUMNS, *FEATURE_COLUMNS, "is_churn", "target_month", "sample_weight"]
    assert (frame["sample_weight"] == 1.0).all()                      # nobody treated: nobody weighted
    assert set(frame["target_month"]) == {*TRAIN, VALID}
    assert (frame["as_of"] == frame["target_month"]).all()
    assert len(frame) == 4 * 2500


def test_labelled_months_are_final_only():
    con = duckdb.connect()
    assert labelled_months(con) == []  # no tables yet
    write_toy_world(con, MONTHS[:3], 50, seed=1, final=False)
    # 2017-03 labels exist but 2017-04 transactions do not: not final yet
    assert labelled_months(con) == MONTHS[:2]
    # an April drop that has arrived up to 04-28 still misses March's last renewal day (04-29)
    april = "SELECT * REPLACE (DATE '2017-04-01' AS partition_month, DATE '{}' AS transaction_date) FROM raw.transactions LIMIT 1"
    con.execute("INSERT INTO raw.transactions " + april.format("2017-04-28"))
    assert labelled_months(con) == MONTHS[:2]
    con.execute("INSERT INTO raw.transactions " + april.format("2017-04-29"))
    assert labelled_months(con) == MONTHS[:3]


# ---------------------------------------------------------------- metrics

def test_ece_zero_when_calibrated_and_known_when_shifted():
    # 4 groups of 100 rows at p in {0.05, 0.25, 0.55, 0.85}, exactly p*100 positives each
    p = np.repeat([0.05, 0.25, 0.55, 0.85], 100)
    y = np.concatenate([np.r_[np.ones(int(q * 100)), np.zeros(100 - int(q * 100))] for q in (0.05, 0.25, 0.55, 0.85)])
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(y, p + 0.1) == pytest.approx(0.1, abs=1e-12)
    table = calibration_table(y, p + 0.1)
    assert list(table["bin"]) == [1, 3, 6, 9] and table["count"].sum() == 400

    rng = np.random.default_rng(0)  # a calibrated forecaster on random data: ECE only sampling noise
    q = rng.random(200_000)
    assert expected_calibration_error(rng.random(q.size) < q, q) < 0.01


def test_evaluate_bucket_a_and_lift():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0] * 10)
    p = np.array([0.9, 0.8, 0.75, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1] * 10)
    m = evaluate(y, p, a_threshold=0.7)
    assert m["recall_a"] == pytest.approx(2 / 3)
    assert m["precision_a"] == pytest.approx(2 / 3)
    assert m["lift_top_decile"] == pytest.approx(1 / 0.3)  # top 10 rows are all 0.9 and churn
    assert 0 < m["auc"] < 1 and m["brier"] > 0
    # undefined is NaN, not 0: an empty bucket A has no precision, a month without churners no recall
    assert np.isnan(evaluate(y, np.full(y.size, 0.1))["precision_a"])
    assert np.isnan(evaluate(np.zeros(y.size), p)["recall_a"])


def test_training_and_monitoring_share_one_metrics_function():
    from churn_assets.monitoring.performance import quality

    rng = np.random.default_rng(1)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    for y_, p_ in ((y, p), (y, p * 0.5)):  # the second has an empty bucket A
        shared, trained, realised = classification_metrics(y_, p_), evaluate(y_, p_), quality(y_, p_, n_boot=10)
        assert trained.keys() == shared.keys()
        for name in shared:
            np.testing.assert_equal(trained[name], shared[name])  # NaN equals NaN here
        for name in ("auc", "pr_auc", "log_loss", "recall_a", "precision_a"):
            np.testing.assert_equal(realised[name], shared[name])
    assert np.isnan(quality(y, p * 0.5, n_boot=10)["precision_a"])


# ---------------------------------------------------------------- training

def test_validation_month_is_never_trained_on(world):
    _, frame, _ = world
    with pytest.raises(ValueError, match="newer than every train month"):
        split_months(frame, [*TRAIN, VALID], VALID)
    fit, stop, valid = split_months(frame, TRAIN, VALID)
    assert set(fit["target_month"]) == set(TRAIN[:-1])
    assert set(stop["target_month"]) == {TRAIN[-1]} and set(valid["target_month"]) == {VALID}


def test_trained_model_beats_baseline_and_is_calibrated(world, result):
    _, frame, oracle = world
    m = result.metrics
    truth = oracle[oracle["target_month"] == VALID]
    ceiling = evaluate(truth["is_churn"], truth["true_churn_probability"])
    assert m["auc"] > result.baseline_metrics["auc"]
    assert m["auc"] >= 0.93 * ceiling["auc"]
    assert m["ece"] < 0.04 and m["log_loss"] < 1.1 * ceiling["log_loss"]
    assert 0 < result.best_iteration < 1000
    v = result.validation_predictions
    assert list(v.columns) == ["msno", "churn_probability", "is_churn"] and len(v) == 2500
    assert v["churn_probability"].between(0, 1).all()
    # the metrics are the hold-out model's, on the month it never saw
    valid = frame[frame["target_month"] == VALID]
    np.testing.assert_allclose(v["churn_probability"], result.holdout_model.predict_proba(valid))
    # the drift reference: every month the deployable model learned (< 20k rows: all of them)
    assert list(result.reference_sample.columns) == [*FEATURE_COLUMNS, "target_month"]
    assert len(result.reference_sample) == 10_000
    assert result.reference_sample["target_month"].value_counts().to_dict() == {m: 2500 for m in [*TRAIN, VALID]}
    assert result.feature_importance["gain"].is_monotonic_decreasing
    assert result.calibration_curve["count"].sum() == 2500


def test_final_booster_refits_all_train_months(world, result):
    _, frame, _ = world
    stage1 = train_churn_model(frame, {"refit": False}, TRAIN, VALID, seed=0)
    n_fit = frame["target_month"].isin(TRAIN[:-1]).sum()
    n_train = frame["target_month"].isin(TRAIN).sum()
    n_all = frame["target_month"].isin([*TRAIN, VALID]).sum()
    # stage 2 runs the early-stopped iteration count scaled by the row ratio, on every train month
    holdout = result.holdout_model
    assert holdout.best_iteration == result.holdout_iteration == round(stage1.best_iteration * n_train / n_fit)
    assert holdout.best_iteration > stage1.best_iteration
    assert holdout.booster.current_iteration() == holdout.best_iteration
    # the deployable model: the same recipe on the validation month too, rounds scaled again
    assert result.best_iteration == result.model.best_iteration == round(stage1.best_iteration * n_all / n_fit)
    assert result.model.booster.current_iteration() == result.best_iteration
    # the calibrator is the one fitted out of sample, on stage 1's predictions of the newest month
    assert result.model.calibrator == holdout.calibrator == stage1.model.calibrator
    assert result.baseline_metrics == stage1.baseline_metrics
    assert result.metrics["log_loss"] != stage1.metrics["log_loss"]
    # without refit the stage-1 booster ships as it is: it learned the train months only
    assert stage1.model is stage1.holdout_model and stage1.trained_through == TRAIN[-1]
    assert result.trained_through == VALID


def test_deployable_model_learns_the_validation_month(world, result):
    _, frame, _ = world
    # relabel the validation month and add a category seen only there (a new sign-up channel)
    changed = frame.copy()
    is_valid = changed["target_month"] == VALID
    changed.loc[is_valid, "is_churn"] = np.random.default_rng(1).permutation(changed.loc[is_valid, "is_churn"].to_numpy())
    changed.loc[is_valid & (changed["registered_via"] == "13"), "registered_via"] = "99"
    other = train_churn_model(changed, None, TRAIN, VALID, seed=0)
    # the hold-out model never saw the validation month: identical; the deployable one learned it
    assert other.holdout_model.model_str == result.holdout_model.model_str
    assert other.model.model_str != result.model.model_str
    assert "99" in other.model.categories["registered_via"] and "99" not in other.holdout_model.categories["registered_via"]
    # importance is the deployable booster's (the model that is served and watched for drift)
    splits = result.model.booster.feature_importance("split", iteration=result.best_iteration)
    assert result.feature_importance["split"].sum() == splits.sum()
    # different labels: a different training fingerprint
    assert other.fingerprint != result.fingerprint


def test_training_fingerprint_is_stable_and_sensitive(world, result):
    _, frame, _ = world
    fp = training_fingerprint(frame, TRAIN, VALID, None, 0)
    assert result.fingerprint == fp
    # row order, runtime settings and months outside the window do not matter
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert training_fingerprint(shuffled, TRAIN, VALID, {"num_threads": 2}, 0) == fp
    assert training_fingerprint(frame[frame["target_month"] != MONTHS[0]], TRAIN, VALID, dict(DEFAULT_PARAMS), 0) == fp
    # data, window, recipe and seed do
    one_label = frame.copy()
    one_label.loc[one_label.index[0], "is_churn"] = 1 - one_label.loc[one_label.index[0], "is_churn"]
    one_feature = frame.copy()
    one_feature.loc[one_feature.index[-1], "secs_30d"] += 1.0
    assert training_fingerprint(one_label, TRAIN, VALID, None, 0) != fp
    assert training_fingerprint(one_feature, TRAIN, VALID, None, 0) != fp
    assert training_fingerprint(frame, TRAIN[1:], VALID, None, 0) != fp
    assert training_fingerprint(frame, TRAIN, VALID, {"num_leaves": 15}, 0) != fp
    assert training_fingerprint(frame, TRAIN, VALID, None, 1) != fp


@pytest.mark.slow
def test_thread_count_is_runtime_not_recipe(world, result):
    _, frame, _ = world
    assert resolve_threads(3) == 3 and resolve_threads(0) >= 1
    assert result.num_threads == resolve_threads(0)
    one = train_churn_model(frame, {**result.params, "num_threads": 7}, TRAIN, VALID, seed=0, num_threads=1)
    assert one.num_threads == 1  # the config's count wins over one smuggled into params
    assert not set(RUNTIME_PARAMS) & set(one.params) and one.params == result.params
    assert one.fingerprint == result.fingerprint


def test_pyfunc_contract(world, result):
    _, frame, _ = world
    model: ChurnModel = result.model
    rows = frame[frame["target_month"] == VALID].head(200)
    p = model.predict_proba(rows)
    out = model.predict(None, rows)
    # predict also returns the bucket, action and reasons (scoring); the probability leads
    assert list(out.columns) == PREDICT_COLUMNS and PREDICT_COLUMNS[0] == "churn_probability"
    assert np.allclose(out["churn_probability"], p)
    contrib = model.contributions(rows)
    assert list(contrib.columns) == [*FEATURE_COLUMNS, "bias"]
    raw = model.raw_probability(rows)
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(raw / (1 - raw)), atol=1e-6)

    with pytest.raises(ValueError, match="secs_30d, city"):
        model.predict_proba(rows.drop(columns=["secs_30d", "city"]))

    odd = rows.copy()  # unseen category and numbers as strings/ints still score
    odd["city"] = "no-such-city"
    odd["active_days_30d"] = odd["active_days_30d"].astype("int64")
    q = model.predict_proba(odd)
    assert np.isfinite(q).all() and ((q > 0) & (q < 1)).all()
    assert model.categories["city"] == sorted(model.categories["city"]) and "no-such-city" not in model.categories["city"]


@pytest.mark.slow
def test_tune_small_search(world):
    _, frame, _ = world
    params, trials = tune(frame, TRAIN, VALID, n_trials=3, seed=1)
    assert set(SEARCH_SPACE) <= set(params) and params["objective"] == "binary"
    assert not set(RUNTIME_PARAMS) & set(params)
    assert len(trials) == 3 and {"value", "state"} <= set(trials.columns)
    assert trials["value"].dropna().min() < 0.5
    # the validation month's labels play no part in the search
    shuffled = frame.copy()
    is_valid = shuffled["target_month"] == VALID
    shuffled.loc[is_valid, "is_churn"] = np.random.default_rng(0).permutation(shuffled.loc[is_valid, "is_churn"].to_numpy())
    params2, trials2 = tune(shuffled, TRAIN, VALID, n_trials=3, seed=1)
    assert params2 == params and trials2["value"].tolist() == trials["value"].tolist()


def test_single_class_month_is_refused(world):
    _, frame, _ = world
    flat = frame.assign(is_churn=np.where(frame["target_month"] == TRAIN[-1], 0, frame["is_churn"]))
    with pytest.raises(ValueError, match="single class"):
        train_churn_model(pd.DataFrame(flat), None, TRAIN, VALID)
