"""Realised performance at the score's lead: pairing, bands, metrics by hand, bootstrap, alarm."""
from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn_assets.monitoring.oracle_evaluation import (
    ORACLE_COMPARISON_COLUMNS, compare_pairs_with_oracle, compare_with_oracle,
)
from churn_assets.monitoring.performance import (
    BAND_ORDER, FIRST_SCORE, PERFORMANCE_COLUMNS, PERFORMANCE_TABLE, base_log_loss, bootstrap_auc_ci,
    headline_version, judge_month, late_first_scores, lead_pairs, pairs_from_frames, quality, realised_performance,
    relative_log_loss, validation_quality, write_performance,
)
from churn_assets.monitoring.policy import performance_decision

MARCH = dt.date(2017, 3, 1)


def d(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


LABELS = pd.DataFrame(
    [  # msno, target_month, last_expire, is_churn
        ("m1", d("2017-03-01"), d("2017-03-10"), 1),
        ("m2", d("2017-03-01"), d("2017-03-20"), 0),
        ("m3", d("2017-03-01"), d("2017-03-05"), 1),
        ("m4", d("2017-03-01"), d("2017-03-25"), 0),  # first scored 5 days ahead: late
        ("m5", d("2017-03-01"), d("2017-03-15"), 0),  # never scored: left out
        ("m6", d("2017-03-01"), d("2017-03-28"), 0),  # scored by version 2 only
        ("m7", d("2017-03-01"), d("2017-03-31"), 1),  # first score 46 days ahead (plan extended)
    ],
    columns=["msno", "target_month", "last_expire", "is_churn"],
)

SCORES = pd.DataFrame(
    [  # week_start, msno, membership_expire_date, churn_probability, model_version    lead
        (d("2017-02-13"), "m1", d("2017-03-10"), 0.20, "1"),  # 25: first of the cycle
        (d("2017-03-06"), "m1", d("2017-03-10"), 0.80, "1"),  # 4: last before expiry
        (d("2017-03-13"), "m1", d("2017-04-10"), 0.10, "1"),  # after expiry: next cycle
        (d("2017-02-20"), "m2", d("2017-03-20"), 0.60, "1"),  # 28
        (d("2017-03-13"), "m2", d("2017-03-20"), 0.30, "1"),  # 7
        (d("2017-01-09"), "m3", d("2017-02-05"), 0.05, "1"),  # previous cycle
        (d("2017-02-06"), "m3", d("2017-03-05"), 0.90, "1"),  # 27
        (d("2017-03-20"), "m4", d("2017-03-25"), 0.85, "1"),  # 5
        (d("2017-02-27"), "m6", d("2017-03-28"), 0.40, "2"),  # 29
        (d("2017-03-06"), "m6", d("2017-03-28"), 0.35, "2"),  # 22: same band, later
        (d("2017-03-27"), "m6", d("2017-03-28"), 0.45, "2"),  # 1
        (d("2017-02-13"), "m7", d("2017-03-14"), 0.70, "1"),  # 46
        (d("2017-03-06"), "m7", d("2017-03-31"), 0.75, "1"),  # 25
        (d("2017-03-20"), "m7", d("2017-03-31"), 0.50, "1"),  # 11
    ],
    columns=["week_start", "msno", "membership_expire_date", "churn_probability", "model_version"],
)


def chosen(pairs: pd.DataFrame, band: str) -> dict[str, float]:
    return pairs[pairs["lead_band"] == band].set_index("msno")["churn_probability"].to_dict()


def test_first_score_of_the_cycle_not_the_last_and_late_ones_left_out():
    pairs = pairs_from_frames(LABELS, SCORES)
    # m1's headline is its first score (0.20), not the 0.80 it got 4 days before expiry;
    # m4 was first scored 5 days ahead: no headline row; m7's first score is 46 days ahead
    assert chosen(pairs, FIRST_SCORE) == {"m1": 0.20, "m2": 0.60, "m3": 0.90, "m6": 0.40, "m7": 0.70}
    assert late_first_scores(pairs).to_dict() == {d("2017-03-01"): 1}
    head = pairs[pairs["lead_band"] == FIRST_SCORE].set_index("msno")
    assert head.loc["m1", "lead_days"] == 25 and head.loc["m7", "lead_days"] == 46
    assert "m5" not in set(pairs["msno"])


def test_lead_bands_take_the_earliest_score_in_the_band():
    pairs = pairs_from_frames(LABELS, SCORES)
    assert chosen(pairs, "21-30") == {"m1": 0.20, "m2": 0.60, "m3": 0.90, "m6": 0.40, "m7": 0.75}
    assert chosen(pairs, "14-20") == {}
    assert chosen(pairs, "7-13") == {"m2": 0.30, "m7": 0.50}
    assert chosen(pairs, "0-6") == {"m1": 0.80, "m4": 0.85, "m6": 0.45}
    assert set(pairs["lead_band"]) <= set(BAND_ORDER)
    assert not pairs.duplicated(["target_month", "msno", "lead_band"]).any()


def test_rows_per_version_and_band_with_hand_computed_metrics():
    perf = realised_performance(LABELS, SCORES, a_threshold=0.7, n_boot=200)
    assert list(perf.columns) == PERFORMANCE_COLUMNS
    keys = list(perf[["model_version", "lead_band"]].itertuples(index=False, name=None))
    assert keys == [("1", FIRST_SCORE), ("1", "21-30"), ("1", "7-13"), ("1", "0-6"),
                    ("2", FIRST_SCORE), ("2", "21-30"), ("2", "0-6")]
    v1 = perf.iloc[0]
    # headline v1: m1 0.20 (churn), m2 0.60, m3 0.90 (churn), m7 0.70 (churn)
    assert v1["n_scored"] == 4 and v1["churn_rate"] == 0.75
    assert v1["auc"] == pytest.approx(2 / 3)  # 0.9 and 0.7 beat 0.6, 0.2 does not
    expected_ll = -(math.log(0.2) + math.log(0.4) + math.log(0.9) + math.log(0.7)) / 4
    assert v1["log_loss"] == pytest.approx(expected_ll)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert v1["base_log_loss"] == pytest.approx(entropy)
    assert v1["relative_log_loss"] == pytest.approx(expected_ll / entropy)
    assert v1["recall_a"] == pytest.approx(2 / 3) and v1["precision_a"] == 1.0  # A = m3, m7
    last = perf[(perf["model_version"] == "1") & (perf["lead_band"] == "0-6")].iloc[0]
    assert last["n_scored"] == 2 and last["auc"] == 0.0  # m1 0.80 (churn) below m4 0.85
    v2 = perf.iloc[4]  # one negative only: nothing to rank, no skill to measure
    assert v2["n_scored"] == 1 and math.isnan(v2["auc"]) and math.isnan(v2["auc_ci_high"])
    assert math.isnan(v2["relative_log_loss"]) and math.isnan(v2["recall_a"])
    assert headline_version(pairs_from_frames(LABELS, SCORES)) == "1"  # 4 headline rows against 1


def test_sql_on_warehouse_tables_filters_the_month():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features; CREATE SCHEMA scoring")
    con.execute("CREATE TABLE features.labels AS SELECT msno, CAST(target_month AS DATE) target_month, "
                "CAST(last_expire AS DATE) last_expire, is_churn FROM LABELS")
    con.execute("INSERT INTO features.labels VALUES ('m1', DATE '2017-04-01', DATE '2017-04-10', 0)")
    con.execute("CREATE TABLE scoring.churn_scores AS SELECT CAST(week_start AS DATE) week_start, msno, "
                "CAST(membership_expire_date AS DATE) membership_expire_date, churn_probability, "
                "CAST(model_version AS INTEGER) model_version FROM SCORES")
    pairs = lead_pairs(con, MARCH)
    assert set(pairs["target_month"].dt.date) == {MARCH}
    assert chosen(pairs, FIRST_SCORE) == chosen(pairs_from_frames(LABELS, SCORES), FIRST_SCORE)
    assert set(pairs["model_version"]) == {"1", "2"}
    april = lead_pairs(con, dt.date(2017, 4, 1))
    # m1's April cycle: scored 03-13, 28 days ahead
    assert chosen(april, FIRST_SCORE) == {"m1": 0.10} == chosen(april, "21-30")
    # a stricter headline drops m1 (25 days) and m3 (27 days) into the late count
    strict = lead_pairs(con, MARCH, min_lead_days=28)
    assert set(chosen(strict, FIRST_SCORE)) == {"m2", "m6", "m7"}
    assert late_first_scores(strict).sum() == 3

    # an intervention reached m1 (its expiry) and m2 (an expiry in March): left out; m3 is in
    # the control arm, m6's treatment is for another month, m7 got the baseline e-mail: all stay
    con.execute("CREATE SCHEMA marketing")
    con.execute("""CREATE TABLE marketing.treatments AS SELECT * FROM (VALUES
        ('m1', DATE '2017-03-10', 'treated', 'A', 'call to understand the pain points', 0),
        ('m2', DATE '2017-03-18', 'treated', 'B', 'offer a discount', 10),
        ('m3', DATE '2017-03-05', 'control', 'B', 'none', 0),
        ('m6', DATE '2017-04-28', 'treated', 'B', 'offer a discount', 20),
        ('m7', DATE '2017-03-31', 'treated', 'C', 'send an appreciation e-mail', 0))
        AS t(msno, membership_expire_date, arm, bucket, action, discount_pct)""")
    untreated = lead_pairs(con, MARCH)
    assert set(chosen(untreated, FIRST_SCORE)) == set(chosen(pairs, FIRST_SCORE)) - {"m1", "m2"}
    assert {"m3", "m6", "m7"} <= set(untreated["msno"])           # control, another month, the baseline


def test_the_month_is_judged_on_the_main_versions_headline():
    pairs = pairs_from_frames(LABELS, SCORES)
    perf = realised_performance(LABELS, SCORES, n_boot=200)
    validation = {"1": {"auc": 0.95, "log_loss": 0.3, "relative_log_loss": 0.5},
                  "2": {"auc": float("nan"), "log_loss": 0.3, "relative_log_loss": float("nan")}}
    verdict = judge_month(perf, pairs, validation, auc_margin=0.02, relative_log_loss_margin=0.05)
    # version 1 made 4 of the 5 headline scores: its verdict (AUC 2/3 far below 0.95) is the month's
    assert (verdict.version, verdict.decision, verdict.n_scored, verdict.late_first_scores) == ("1", "retrain", 4, 1)
    assert verdict.number("valid_auc") == 0.95 and verdict.number("auc") == pytest.approx(2 / 3)
    head = verdict.perf[verdict.perf["lead_band"] == FIRST_SCORE].set_index("model_version")["decision"]
    assert head.to_dict() == {"1": "retrain", "2": "none"}  # NaN validation: nothing to compare
    assert verdict.perf.loc[verdict.perf["lead_band"] != FIRST_SCORE, "decision"].isna().all()
    assert "decision" not in perf.columns  # the input is left as it was


def test_no_headline_means_no_verdict():
    late = SCORES[SCORES["msno"] == "m4"]
    pairs = pairs_from_frames(LABELS, late)
    verdict = judge_month(realised_performance(LABELS, late, n_boot=50), pairs,
                          {"1": {"auc": 0.8, "log_loss": 0.4, "relative_log_loss": 0.9}})
    assert (verdict.version, verdict.decision, verdict.n_scored) == ("1", "none", 0)
    assert verdict.headline.empty and math.isnan(verdict.number("auc"))


def test_validation_quality_from_metrics_and_scores():
    scores = pd.DataFrame({"is_churn": [0, 1, 0, 1], "churn_probability": [0.2, 0.7, 0.4, 0.6]})
    got = validation_quality({"auc": 0.8, "log_loss": 0.4, "brier": 0.1}, scores)
    assert got["auc"] == 0.8 and got["log_loss"] == 0.4
    assert got["relative_log_loss"] == pytest.approx(relative_log_loss(scores["is_churn"], scores["churn_probability"]))
    empty = validation_quality({}, scores.drop(columns="is_churn"))
    assert all(math.isnan(v) for v in empty.values())


def test_a_table_of_the_old_shape_is_recreated():
    perf = realised_performance(LABELS, SCORES, n_boot=50)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA monitoring")
    con.execute(f"CREATE TABLE {PERFORMANCE_TABLE} (target_month DATE, model_version VARCHAR, auc DOUBLE)")
    assert "lead_band" in write_performance(con, perf, MARCH)
    assert write_performance(con, perf, MARCH) == []  # now it fits: rows replaced, not added
    assert con.execute(f"SELECT count(*) FROM {PERFORMANCE_TABLE}").fetchone()[0] == len(perf)


def _world(intercept: float, slope: float = 1.6, n: int = 20_000, seed: int = 0):
    """Labels drawn from calibrated scores: logit = intercept + slope * x."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-(intercept + slope * rng.normal(size=n))))
    return (rng.random(n) < p).astype(int), p


def test_bootstrap_interval_contains_the_estimate_and_is_deterministic():
    y, p = _world(-2.0, n=3000, seed=1)
    p = np.round(p, 2)  # many ties
    low, high = bootstrap_auc_ci(y, p, n_boot=400, seed=3)
    assert low < roc_auc_score(y, p) < high
    assert (low, high) == bootstrap_auc_ci(y, p, n_boot=400, seed=3)
    assert (low, high) != bootstrap_auc_ci(y, p, n_boot=400, seed=4)
    # the vectorised statistic matches a plain loop of sklearn AUCs over resamples
    rng = np.random.default_rng(0)
    naive = [roc_auc_score(y[i], p[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(400))]
    assert np.percentile(naive, [2.5, 97.5]) == pytest.approx([low, high], abs=0.006)
    wide = bootstrap_auc_ci(y[:300], p[:300], n_boot=400, seed=3)
    assert wide[1] - wide[0] > 2 * (high - low)  # a tenth of the members: ~3x wider
    assert all(math.isnan(v) for v in bootstrap_auc_ci([0, 0, 0], [0.1, 0.2, 0.3]))


def test_base_and_relative_log_loss():
    assert base_log_loss(np.array([1, 0, 0, 0])) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert math.isnan(base_log_loss(np.zeros(5))) and math.isnan(base_log_loss(np.array([])))
    y = np.array([1, 0, 0, 0])
    assert relative_log_loss(y, np.full(4, 0.25)) == pytest.approx(1.0)  # the base rate itself: no skill
    assert relative_log_loss(y, np.array([0.9, 0.1, 0.1, 0.1])) < 0.5


def test_alarm_ignores_a_base_rate_change_and_catches_a_real_drop():
    valid_y, valid_p = _world(-2.4, seed=1)  # ~15 % churn
    validation = {"auc": roc_auc_score(valid_y, valid_p), "relative_log_loss": relative_log_loss(valid_y, valid_p)}
    # same ranking power, same calibration, churn rate ~25 %
    same_y, same_p = _world(-1.6, seed=2)
    same = quality(same_y, same_p, n_boot=300)
    assert same["churn_rate"] > quality(valid_y, valid_p, n_boot=10)["churn_rate"] + 0.08
    assert same["log_loss"] > 0.05 + quality(valid_y, valid_p, n_boot=10)["log_loss"]  # raw log loss would alarm
    assert performance_decision(same, validation) == "none"
    # the world moved: the scores rank members half as well
    drop_y, true_p = _world(-2.4, seed=3)
    noise = np.random.default_rng(4).normal(size=len(drop_y))
    stale_p = 1 / (1 + np.exp(-(np.log(true_p / (1 - true_p)) + 1.5 * noise)))
    drop = quality(drop_y, stale_p, n_boot=300)
    assert drop["auc_ci_high"] < validation["auc"] - 0.02
    assert performance_decision(drop, validation) == "retrain"
    # miscalibrated only (same ranking, odds tripled): caught by relative log loss
    odds = 3 * valid_p / (1 - valid_p)
    off = quality(valid_y, odds / (1 + odds), n_boot=300)
    assert off["auc"] == pytest.approx(validation["auc"])
    assert off["auc_ci_high"] > validation["auc"] - 0.02
    assert performance_decision(off, validation) == "retrain"


def test_invalid_threshold():
    with pytest.raises(ValueError):
        realised_performance(LABELS, SCORES, a_threshold=1.5)


# ---------------------------------------------------------------- oracle comparison

ORACLE = pd.DataFrame({
    "msno": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
    "target_month": pd.Timestamp("2017-03-01"),
    "last_expire": LABELS["last_expire"],
    "true_churn_probability": [0.70, 0.30, 0.80, 0.60, 0.10, 0.20, 0.65],
    "is_churn": LABELS["is_churn"],
})


def test_oracle_comparison_on_the_same_pairs():
    pairs = pairs_from_frames(LABELS, SCORES)
    table = compare_pairs_with_oracle(pairs, ORACLE)
    assert list(table.columns) == ORACLE_COMPARISON_COLUMNS
    assert list(table["lead_band"]) == [FIRST_SCORE, "21-30", "7-13", "0-6"]
    head = table.iloc[0]
    # the headline pairs of every version: m1, m2, m3, m6, m7 (churners m1, m3, m7)
    assert head["n_pairs"] == 5 and head["churn_rate"] == pytest.approx(0.6)
    y = [1, 0, 1, 0, 1]
    model = [0.20, 0.60, 0.90, 0.40, 0.70]
    oracle = [0.70, 0.30, 0.80, 0.20, 0.65]
    assert head["model_auc"] == pytest.approx(roc_auc_score(y, model))
    assert head["oracle_auc"] == pytest.approx(1.0)
    assert head["auc_vs_oracle"] == pytest.approx(head["model_auc"] / head["oracle_auc"])
    ll = lambda p: -np.mean([math.log(q if t else 1 - q) for t, q in zip(y, p)])  # noqa: E731
    assert head["model_log_loss"] == pytest.approx(ll(model))
    assert head["oracle_log_loss"] == pytest.approx(ll(oracle))
    assert head["log_loss_vs_oracle"] == pytest.approx(ll(model) / ll(oracle))
    short = table.set_index("lead_band").loc["0-6"]  # m1, m4, m6
    assert short["n_pairs"] == 3 and short["oracle_auc"] == pytest.approx(1.0)


def test_oracle_comparison_reads_the_warehouse_and_the_parquet(tmp_path):
    path = tmp_path / "oracle" / "renewals.parquet"
    path.parent.mkdir()
    oracle = ORACLE.assign(target_month=ORACLE["target_month"].dt.date, last_expire=ORACLE["last_expire"].dt.date)
    oracle.to_parquet(path)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features; CREATE SCHEMA scoring")
    con.execute("CREATE TABLE features.labels AS SELECT msno, CAST(target_month AS DATE) target_month, "
                "CAST(last_expire AS DATE) last_expire, is_churn FROM LABELS")
    con.execute("CREATE TABLE scoring.churn_scores AS SELECT CAST(week_start AS DATE) week_start, msno, "
                "CAST(membership_expire_date AS DATE) membership_expire_date, churn_probability, model_version FROM SCORES")
    table = compare_with_oracle(con, path)
    expected = compare_pairs_with_oracle(pairs_from_frames(LABELS, SCORES), ORACLE)
    pd.testing.assert_frame_equal(table.drop(columns="target_month"), expected.drop(columns="target_month"))
    assert compare_with_oracle(con, path, dt.date(2017, 4, 1)).empty
    with pytest.raises(FileNotFoundError):
        compare_with_oracle(con, tmp_path / "missing.parquet")
