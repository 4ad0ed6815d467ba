"""The promotion gate's statistics (churn_assets.model.gate) on synthetic arrays: no Dagster,
no MLflow. Scores are drawn from a known model so the expected verdicts are by construction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn_assets.model import gate as G
from churn_assets.model.promotion import population_weights

N = 20_000


@pytest.fixture(scope="module")
def world():
    """Labels from a known churn logit; the incumbent sees that logit with a little noise."""
    rng = np.random.default_rng(42)
    logit = rng.normal(-2.8, 1.3, N)
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(float)
    incumbent = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.3, N))))
    return y, incumbent, rng


def test_weighted_auc_is_the_rank_auc_with_ties_and_resamples():
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.1).astype(float)
    p = np.round(rng.random(5000) * 0.5 + 0.3 * y, 2)  # rounded: many tied scores
    assert G.auc_by_ranks(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    rows = rng.integers(0, len(y), len(y))  # one explicit bootstrap resample, as counts
    counts = np.bincount(rows, minlength=len(y))
    assert G.weighted_auc(counts, y, p)[0] == pytest.approx(roc_auc_score(y[rows], p[rows]), abs=1e-12)


def test_identical_predictions_pass_with_zero_width_intervals(world):
    y, incumbent, _ = world
    r = G.non_inferiority(y, incumbent, incumbent.copy())
    assert r.passed
    assert (r.delta_auc_low, r.delta_auc_high, r.delta_log_loss_low, r.delta_log_loss_high) == (0, 0, 0, 0)


def test_clearly_worse_model_fails(world):
    y, incumbent, rng = world
    worse = np.clip(incumbent + rng.normal(0, 0.15, N), 1e-4, 1 - 1e-4)  # rankings scrambled
    r = G.non_inferiority(y, worse, incumbent)
    assert not r.passed
    assert r.delta_auc_high < -G.AUC_MARGIN and r.delta_log_loss_low > G.LOG_LOSS_MARGIN
    assert "lower bound <=" in r.describe() and "upper bound >=" in r.describe()


def test_tiny_worse_within_margin_passes(world):
    y, incumbent, rng = world
    logit = np.log(incumbent / (1 - incumbent))
    tiny = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.05, N))))  # a hair noisier than the incumbent
    r = G.non_inferiority(y, tiny, incumbent)
    assert r.delta_auc < 0 and r.delta_log_loss > 0  # truly (a little) worse ...
    assert r.passed  # ... but not by more than the margins
    assert r.delta_auc_low > -G.AUC_MARGIN and r.delta_log_loss_high < G.LOG_LOSS_MARGIN


def test_same_ranking_but_miscalibrated_fails_on_log_loss(world):
    y, incumbent, _ = world
    logit = np.log(incumbent / (1 - incumbent))
    inflated = 1 / (1 + np.exp(-(logit + 0.5)))  # strictly monotone: AUC unchanged, probabilities too high
    r = G.non_inferiority(y, inflated, incumbent)
    assert r.delta_auc_low == r.delta_auc_high == pytest.approx(0.0, abs=1e-12)
    assert not r.passed and r.delta_log_loss_high >= G.LOG_LOSS_MARGIN


@pytest.mark.slow
def test_bootstrap_is_deterministic_for_a_seed_and_paired(world):
    y, incumbent, rng = world
    other = np.clip(incumbent + rng.normal(0, 0.01, N), 1e-4, 1 - 1e-4)
    a, b = G.non_inferiority(y, other, incumbent, seed=3), G.non_inferiority(y, other, incumbent, seed=3)
    c = G.non_inferiority(y, other, incumbent, seed=4)
    assert a == b
    assert c.delta_auc == a.delta_auc and c.delta_auc_low != a.delta_auc_low  # same data, other resamples
    # the log-loss interval is the paired one: its width matches the normal approximation
    # of the mean per-row difference (an unpaired or mis-sized resample would not)
    d_rows = G.row_log_loss(y, other) - G.row_log_loss(y, incumbent)
    expected = 2 * 1.96 * d_rows.std() / np.sqrt(N)
    assert a.delta_log_loss_high - a.delta_log_loss_low == pytest.approx(expected, rel=0.15)


def test_base_rate_floors():
    y = np.r_[np.ones(100), np.zeros(900)]
    assert G.base_rate_log_loss(y) == pytest.approx(-(0.1 * np.log(0.1) + 0.9 * np.log(0.9)))
    # the constant forecast fails both floors; its log loss is the base rate's by definition
    constant = G.floor_problems(0.5, G.base_rate_log_loss(y), y)
    assert len(constant) == 2 and "not above chance" in constant[0] and "base-rate log loss" in constant[1]
    assert G.floor_problems(0.75, 0.9 * G.base_rate_log_loss(y), y) == []
    assert len(G.floor_problems(0.75, 0.97 * G.base_rate_log_loss(y), y)) == 1  # gain 3 % < 5 %
    assert len(G.floor_problems(0.59, 0.5, y)) == 2


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="both classes"):
        G.non_inferiority(np.zeros(10), np.full(10, 0.1), np.full(10, 0.2))
    with pytest.raises(ValueError, match="same length"):
        G.non_inferiority(np.r_[0.0, 1.0], np.r_[0.1], np.r_[0.1, 0.2])


def test_integer_weights_give_the_metrics_of_the_repeated_rows(world):
    """A row of weight k counts as k copies of it: the weighted point estimates are those of
    the expanded rows (what the hold-out's inverse-probability weights stand for)."""
    y, incumbent, rng = world
    challenger = np.clip(incumbent + rng.normal(0, 0.05, N), 1e-4, 1 - 1e-4)
    w = rng.integers(0, 4, N).astype(float)
    rows = np.repeat(np.arange(N), w.astype(int))
    r = G.non_inferiority(y, challenger, incumbent, weights=w, n_bootstrap=50)
    assert r.delta_auc == pytest.approx(roc_auc_score(y[rows], challenger[rows]) - roc_auc_score(y[rows], incumbent[rows]),
                                        abs=1e-12)
    expanded = G.row_log_loss(y[rows], challenger[rows]) - G.row_log_loss(y[rows], incumbent[rows])
    assert r.delta_log_loss == pytest.approx(expanded.mean(), abs=1e-12)
    assert G.weighted_auc_log_loss(y, incumbent, w)[0] == pytest.approx(roc_auc_score(y[rows], incumbent[rows]), abs=1e-12)


def test_weights_decide_where_the_models_differ(world):
    """A challenger worse only on the rows that stand for many members (weight 10) passes
    unweighted and is refused once those rows weigh what they stand for."""
    y, incumbent, rng = world
    heavy = np.random.default_rng(7).random(N) < 0.05
    logit = np.log(incumbent / (1 - incumbent))
    challenger = np.where(heavy, 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, N)))), incumbent)
    w = np.where(heavy, 10.0, 1.0)
    assert G.non_inferiority(y, challenger, incumbent).passed
    assert not G.non_inferiority(y, challenger, incumbent, weights=w).passed
    with pytest.raises(ValueError, match="weights"):
        G.non_inferiority(y, challenger, incumbent, weights=-w)


def test_acceptance_rows_take_their_sample_weight_from_the_frame():
    rows = pd.DataFrame({"msno": ["a", "b", "c"]})
    frame = pd.DataFrame({"msno": ["c", "a"], "sample_weight": [9.5, 1.0]})
    assert population_weights(rows, frame).tolist() == [1.0, 1.0, 9.5]   # b: not in the frame, weight 1
    assert population_weights(rows, None).tolist() == [1.0, 1.0, 1.0]
    assert population_weights(rows, frame.drop(columns="sample_weight")).tolist() == [1.0, 1.0, 1.0]
