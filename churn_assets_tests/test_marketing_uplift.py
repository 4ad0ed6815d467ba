"""Learning the offer: shrunk uplift per rung, exploration between rungs, call capacity."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import ACTIONS
from churn_assets.marketing.uplift import capacity_buckets, explore_offers, learn_uplift
from churn_assets.scoring.offers import DEFAULT_UPLIFT


def _rung(month, bucket, action, discount, n_t, rate_t, n_c, rate_c):
    return dict(target_month=month, bucket=bucket, action=action, discount_pct=discount, n_treated=n_t,
                churn_rate_treated=rate_t, n_control=n_c, churn_rate_control=rate_c)


def test_no_evidence_gives_the_assumed_table():
    est = learn_uplift(None, DEFAULT_UPLIFT, call_prior=0.3)
    assert est.by_bucket("B") == DEFAULT_UPLIFT and est.call() == 0.3
    assert est.table["weight"].eq(0).all()


def test_strong_evidence_moves_the_estimate_weak_evidence_barely():
    jan, feb = dt.date(2017, 1, 1), dt.date(2017, 2, 1)
    rows = pd.DataFrame([
        # 20 %: 40 000 treated at 0.30 vs 4 000 control at 0.40 over two months: 25 % kept, well measured
        _rung(jan, "B", ACTIONS["B"], 20, 20_000, 0.30, 2_000, 0.40),
        _rung(feb, "B", ACTIONS["B"], 20, 20_000, 0.30, 2_000, 0.40),
        # 10 %: 50 vs 5 members, says 100 % kept: nearly ignored
        _rung(jan, "B", ACTIONS["B"], 10, 50, 0.0, 5, 0.4),
        # a call: 2 000 vs 200 at 0.5 vs 0.8
        _rung(jan, "A", ACTIONS["A"], 0, 2_000, 0.5, 200, 0.8),
    ])
    est = learn_uplift(rows, DEFAULT_UPLIFT, call_prior=0.3)
    table = est.table.set_index(["bucket", "discount_pct"])
    assert table.loc[("B", 20), "n_treated"] == 40_000 and table.loc[("B", 20), "observed"] == pytest.approx(0.25)
    assert est.by_bucket("B")[20] == pytest.approx(0.25, abs=0.01)          # the data, not the 0.40 assumed
    moved = (est.by_bucket("B")[10] - DEFAULT_UPLIFT[10]) / (1.0 - DEFAULT_UPLIFT[10])
    assert 0 < moved < 0.2                                                   # five controls say little
    assert table.loc[("B", 10), "weight"] < 0.3 < 0.95 < table.loc[("B", 20), "weight"]
    assert 0.3 < est.call() < 0.375 + 0.01                                  # between the prior and 1 - 0.5 / 0.8
    # never offered: the assumed 0.50 at the scale the measured rungs support (0.25 / 0.40)
    assert est.by_bucket("B")[30] == pytest.approx(DEFAULT_UPLIFT[30] * 0.25 / 0.40, abs=0.01)
    assert table.loc[("B", 30), "weight"] == 0


def test_the_offer_is_decided_on_the_lower_bound_of_a_measured_rung():
    """The posterior's sd is sqrt(weight) * se: a well-measured rung's bound sits just under its
    estimate, a thin rung's falls to nothing; an unmeasured rung keeps the assumption."""
    from scipy.stats import norm

    jan = dt.date(2017, 1, 1)
    rows = pd.DataFrame([
        _rung(jan, "B", ACTIONS["B"], 20, 40_000, 0.30, 4_000, 0.40),     # 25 % kept, se ~ 0.02
        _rung(jan, "B", ACTIONS["B"], 10, 300, 0.36, 30, 0.40),           # 10 % kept, se ~ 0.3
    ])
    est = learn_uplift(rows, DEFAULT_UPLIFT, call_prior=0.3, confidence=0.95)
    t = est.table.set_index(["bucket", "discount_pct"])
    for d in (10, 20):
        sd = np.sqrt(t.loc[("B", d), "weight"]) * t.loc[("B", d), "observed_se"]
        assert t.loc[("B", d), "uplift_low"] == pytest.approx(max(0.0, t.loc[("B", d), "uplift"] - norm.ppf(0.95) * sd))
    low = est.by_bucket("B", "uplift_low")
    assert 0.2 < low[20] < est.by_bucket("B")[20] and low[10] == 0.0
    assert low[30] == est.by_bucket("B")[30] and low[0] == 0.0      # never offered: no bound to take
    assert learn_uplift(rows, DEFAULT_UPLIFT, confidence=0.5).by_bucket("B", "uplift_low") == est.by_bucket("B")
    assert learn_uplift(None, DEFAULT_UPLIFT).by_bucket("B", "uplift_low") == DEFAULT_UPLIFT
    with pytest.raises(ValueError, match="confidence"):
        learn_uplift(rows, DEFAULT_UPLIFT, confidence=1.0)


def test_exploration_is_stable_and_only_for_b_members_who_can_get_a_discount():
    n = 20_000
    msno = pd.Series([f"m{i}" for i in range(n)])
    expire = pd.Series([dt.date(2017, 3, 1 + i % 28) for i in range(n)])
    buckets = np.where(np.arange(n) % 4 == 0, "C", "B").astype(object)
    can = np.arange(n) % 10 != 0
    discount = np.where(buckets == "B", 10, 0)
    out, explored = explore_offers(msno, expire, buckets, discount, can, (0, 10, 20, 30), share=0.2)
    again, _ = explore_offers(msno, expire, buckets, discount, can, (0, 10, 20, 30), share=0.2)
    assert (out == again).all()
    assert not explored[buckets == "C"].any() and not explored[~can].any()
    eligible = (buckets == "B") & can
    assert explored[eligible].mean() == pytest.approx(0.2, abs=0.01)
    shares = pd.Series(out[explored]).value_counts(normalize=True)
    assert set(shares.index) == {10, 20, 30} and (shares - 1 / 3).abs().max() < 0.03
    assert (out[~explored] == discount[~explored]).all()
    with pytest.raises(ValueError, match="exploration share"):
        explore_offers(msno, expire, buckets, discount, can, (0, 10), share=1.5)


def test_call_capacity_takes_the_most_valuable_new_contacts():
    p = np.array([0.95, 0.9, 0.8, 0.75, 0.5, 0.4, 0.2, 0.9])
    value = np.array([10.0, 100.0, 100.0, 0.0, 300.0, 100.0, 1000.0, 500.0])
    new = np.array([True, True, True, True, True, True, True, False])
    got = capacity_buckets(p, value, new, capacity=2, call_uplift=0.3, a_threshold=0.7, b_threshold=0.3)
    # value of a call: 0.5 * 300 = 150 and 0.9 * 100 = 90 lead; the last member was contacted
    # earlier this cycle and keeps its threshold bucket; 0.2 is below B
    assert got.tolist() == ["B", "A", "B", "B", "A", "B", "C", "A"]
    assert (got[new] == "A").sum() == 2
    assert capacity_buckets(p, value, new, None, 0.3, 0.7, 0.3).tolist() == ["A", "A", "A", "A", "B", "B", "C", "A"]
    with pytest.raises(ValueError, match="capacity"):
        capacity_buckets(p, value, new, -1, 0.3, 0.7, 0.3)


def test_offer_policy_revenue_against_the_oracle_optimal_offer():
    """Two members at a monthly price of 100 over 6 months (V = 600). The first stays at 0.6
    anyway; a 10 % discount lifts it to 0.9: worth 600 * (0.9 * 0.9 - 0.6) = 126. The second
    leaves at 0.9 and no rung moves it: any discount is lost money."""
    from churn_assets.monitoring.oracle_evaluation import offer_policy_revenue

    members = pd.DataFrame({"churn_probability": [0.5, 0.5], "monthly_price": [100.0, 100.0],
                            "p_untreated": [0.4, 0.9], "p_discount_10": [0.1, 0.9], "p_discount_20": [0.1, 0.9],
                            "p_discount_30": [0.1, 0.9]})
    got = offer_policy_revenue(members, {"never": {0: 0.0, 10: 0.0, 20: 0.0, 30: 0.0},
                                         "always 10": {0: 0.0, 10: 0.9, 20: 0.9, 30: 0.9}}, 6).set_index("policy")
    assert got.loc["oracle-optimal", "net_revenue"] == pytest.approx(126.0)
    assert got.loc["oracle-optimal", "offers"] == 1 and got.loc["never", "net_revenue"] == 0.0
    # 10 % for both: +126 on the first, 600 * (0.1 * 0.9 - 0.1) = -6 on the second
    assert got.loc["always 10", "net_revenue"] == pytest.approx(120.0)
    assert got.loc["always 10", "vs_oracle_optimal"] == pytest.approx(120 / 126)


def test_best_on_the_score_is_the_best_rung_per_score_decile():
    """The truth-fitted ceiling of a score-only policy: one rung per score decile, the one whose
    true net revenue summed over the decile is largest (0 when no rung pays there)."""
    from churn_assets.monitoring.oracle_evaluation import (BEST_ON_SCORE, BEST_ON_TRUE_RISK, best_rung_per_score_bin,
                                                           offer_policy_revenue)

    score = np.repeat(np.arange(10) / 10 + 0.05, 2)               # two members per decile
    net = np.zeros((20, 4))
    net[score > 0.5, 2] = 5.0                                      # 20 % pays in the top half
    net[score > 0.5, 3] = [9.0, -10.0] * 2 + [9.0, -10.0] * 3      # 30 % pays one, loses more on the other
    net[:2, 1] = [3.0, -1.0]                                       # 10 % pays on balance in the first decile
    got = best_rung_per_score_bin(score, net)
    assert got.tolist() == [10, 10] + [0] * 8 + [20] * 10
    assert best_rung_per_score_bin(np.zeros(0), np.zeros((0, 4))).size == 0
    # in the revenue table it sits between doing nothing and the clairvoyant optimum
    members = pd.DataFrame({"churn_probability": [0.5, 0.5], "monthly_price": [100.0, 100.0],
                            "p_untreated": [0.4, 0.9], "p_discount_10": [0.1, 0.9], "p_discount_20": [0.1, 0.9],
                            "p_discount_30": [0.1, 0.9]})
    table = offer_policy_revenue(members, {}, 6).set_index("policy")
    assert table.loc[BEST_ON_SCORE, "net_revenue"] == pytest.approx(120.0)   # 10 % for both: +126 - 6
    assert table.loc["oracle-optimal", "net_revenue"] == pytest.approx(126.0)
    # the true risk tells the two apart (two deciles): 10 % to the first only, as the oracle
    assert table.loc[BEST_ON_TRUE_RISK, "net_revenue"] == pytest.approx(126.0)
