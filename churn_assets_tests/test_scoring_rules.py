"""Buckets, discount offers, reasons and score_members: the pure scoring rules."""
from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_scoring import synthetic_features, train_model
from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS
from churn_assets.core.buckets import ACTIONS, actions_for, assign_buckets
from churn_assets.scoring.offers import choose_discount, discount_margins, monthly_price, offer_discounts
from churn_assets.core.reasons import PHRASES, describe, top_reasons
from churn_assets.scoring.scores import SCORE_COLUMNS, ScoringPolicy, score_members

WEEK = dt.date(2017, 3, 6)

# ----------------------------------------------------------------------------- buckets


def test_bucket_edges_follow_thresholds():
    p = np.array([0.0, 0.2999, 0.3, 0.5, 0.6999, 0.7, 1.0])
    assert list(assign_buckets(p)) == ["C", "C", "B", "B", "B", "A", "A"]
    assert list(assign_buckets(p, a_threshold=0.5, b_threshold=0.2)) == ["C", "B", "B", "A", "A", "A", "A"]


def test_actions_match_buckets():
    b = assign_buckets(np.array([0.9, 0.4, 0.1]))
    assert list(actions_for(b)) == [
        "call to understand the pain points", "offer a discount", "send an appreciation e-mail"
    ]
    assert ACTIONS["B"] == "offer a discount"


@pytest.mark.parametrize("a,b", [(0.3, 0.7), (0.5, 0.5), (1.0, 0.3), (0.7, 0.0)])
def test_invalid_thresholds_are_refused(a, b):
    with pytest.raises(ValueError, match="0 < b_threshold < a_threshold < 1"):
        assign_buckets(np.array([0.5]), a_threshold=a, b_threshold=b)


def test_nan_probability_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        assign_buckets(np.array([0.5, np.nan]))


# ----------------------------------------------------------------------------- offers
# V = monthly_price * horizon = 100 * 6 = 600. margin(d) = p*u[d]*V*(1-d/100) - (1-p)*(d/100)*V
#
# default uplift: 10 % -> 0.25, 20 % -> 0.40, 30 % -> 0.50
# p = 0.69: d=10: 0.69*0.25*600*0.9 = 93.15  - 0.31*0.1*600 = 18.6  ->  74.55
#           d=20: 0.69*0.40*600*0.8 = 132.48 - 0.31*0.2*600 = 37.2  ->  95.28  (best)
#           d=30: 0.69*0.50*600*0.7 = 144.9  - 0.31*0.3*600 = 55.8  ->  89.1
# p = 0.50: d=10: 67.5 - 30 = 37.5 (best); d=20: 96 - 60 = 36; d=30: 105 - 90 = 15
# p = 0.25: d=10: 33.75 - 45 = -11.25; d=20: 48 - 90 = -42; d=30: 52.5 - 135 = -82.5  -> no discount pays: 0
# p = 0.90: d=10: 121.5 - 6 = 115.5; d=20: 172.8 - 12 = 160.8; d=30: 189 - 18 = 171 (best)


def test_discount_margins_by_hand():
    ladder, m = discount_margins(np.array([0.69, 0.5, 0.25, 0.9]), np.full(4, 100.0))
    assert list(ladder) == [0, 10, 20, 30]
    expected = [
        [0, 74.55, 95.28, 89.1],
        [0, 37.5, 36.0, 15.0],
        [0, -11.25, -42.0, -82.5],
        [0, 115.5, 160.8, 171.0],
    ]
    np.testing.assert_allclose(m, expected, atol=1e-9)


def test_choose_discount_by_hand():
    p = np.array([0.69, 0.5, 0.25, 0.9, 0.69])
    price = np.array([100.0, 100.0, 100.0, 100.0, 0.0])  # a free plan never gets a discount
    assert list(choose_discount(p, price)) == [20, 10, 0, 30, 0]


def test_custom_uplift_and_horizon():
    # uplift 10 % -> 0.5: p = 0.2, V = 50*2 = 100: 0.2*0.5*100*0.9 = 9 - 0.8*0.1*100 = 8 -> 1 > 0
    assert list(choose_discount(np.array([0.2]), np.array([50.0]), ladder=(0, 10),
                                uplift={0: 0.0, 10: 0.5}, horizon_months=2)) == [10]
    with pytest.raises(ValueError, match="no entry for discount"):
        choose_discount(np.array([0.5]), np.array([1.0]), ladder=(0, 10, 50))


def test_only_configured_buckets_get_offers():
    buckets = np.array(["A", "B", "C"], dtype=object)
    p = np.array([0.9, 0.69, 0.2])
    price = np.full(3, 100.0)
    assert list(offer_discounts(buckets, p, price)) == [0, 20, 0]
    table = {0: 0.0, 10: 0.10, 20: 0.18, 30: 0.24}
    assert list(offer_discounts(buckets, p, price, {"A": table, "B": table})) == [30, 20, 0]


def test_monthly_price_per_30_days():
    np.testing.assert_allclose(monthly_price(np.array([480.0, 99.0, 0.0, np.nan]),
                                             np.array([90.0, 30.0, 30.0, 30.0])), [160.0, 99.0, 0.0, 0.0])


# ----------------------------------------------------------------------------- reasons


def _frame(rows: list[dict]) -> pd.DataFrame:
    base = {c: np.nan for c in FEATURE_COLUMNS}
    return pd.DataFrame([{**base, **r} for r in rows])[FEATURE_COLUMNS]


def _contrib(rows: list[dict]) -> pd.DataFrame:
    """SHAP rows: the given features, everything else slightly negative, bias 1."""
    base = {c: -0.01 for c in FEATURE_COLUMNS}
    return pd.DataFrame([{**base, **r, "bias": 1.0} for r in rows])


def test_top_reasons_order_and_wording():
    features = _frame([
        {"last_is_auto_renew": 0, "cancels_90d": 2, "secs_trend_7_30": 0.4, "age": 19},
        {"days_since_last_log": 23, "days_to_expiry": 5},
        {"age": 19},
    ])
    contrib = _contrib([
        {"last_is_auto_renew": 2.0, "cancels_90d": 1.0, "secs_trend_7_30": 0.5, "age": 0.1},
        {"days_since_last_log": 0.3, "days_to_expiry": 0.7},
        {},
    ])
    r = top_reasons(contrib, features)
    assert list(r.columns) == ["reason_1", "reason_2", "reason_3"]
    # no auto-renew payment on record: a trait, not "switched off"; the cancellations are the same
    # story (one family), so the next reasons are the trend and the age
    assert list(r.iloc[0]) == [
        "pays manually (no auto-renew)", "listening down 60 % on last month", "young member (19)"
    ]
    assert list(r.iloc[1]) == ["plan ends in 5 days", "last listened 23 days ago", None]
    assert r.iloc[2].isna().all()  # nothing pushes towards churn: no reasons


def test_every_feature_has_readable_phrases():
    samples = {
        c: pd.Series(["41", None, "7"], dtype=object) if c in CATEGORICAL_COLUMNS
        else pd.Series([0.0, 1.0, 0.4, 23.0, 400.0, np.nan, np.inf])
        for c in FEATURE_COLUMNS
    }
    assert set(PHRASES) == set(FEATURE_COLUMNS)
    for c, values in samples.items():
        text = describe(c, values)
        assert text.map(lambda s: isinstance(s, str) and len(s) > 5).all(), c
        assert not text.str.contains("_").any(), (c, list(text))  # never a raw feature name
        assert not text.str.contains(r"nan|inf|None", flags=re.I).any(), (c, list(text))


def test_phrases_use_the_members_values():
    assert describe("cancels_90d", pd.Series([1.0, 3.0])).tolist() == [
        "cancelled once in the last 90 days", "cancelled 3 times in the last 90 days"
    ]
    assert describe("n_plan_changes_90d", pd.Series([0.0, 2.0])).tolist() == [
        "kept the same plan for the last 90 days", "changed plan twice in the last 90 days"
    ]
    assert describe("registration_tenure_days", pd.Series([45.0, 400.0])).tolist() == [
        "registered 45 days ago", "registered 13 months ago"
    ]
    assert describe("age", pd.Series([19.0])).tolist() == ["young member (19)"]
    assert describe("last_discount_share", pd.Series([0.0, 0.25])).tolist() == [
        "paid full price", "paid with a 25 % discount"
    ]
    assert describe("days_since_last_log", pd.Series([np.nan])).tolist() == ["never listened"]
    assert "channel 4" in describe("registered_via", pd.Series(["4"])).iloc[0]


# ----------------------------------------------------------------------------- score_members


@pytest.fixture(scope="module")
def model():
    return train_model(n=3000, trees=30)


def test_score_members_contract_and_reasons(model):
    features, _ = synthetic_features(3000, seed=5)
    generous = {0: 0.0, 10: 0.6, 20: 0.7, 30: 0.75}  # 10 % breaks even at p = 0.1 / 0.64 ~ 0.16
    policy = ScoringPolicy(a_threshold=0.5, b_threshold=0.15, uplift_by_bucket={"B": generous})
    scores = score_members(features, model, "7", WEEK, policy)
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == 3000 and scores["msno"].is_unique
    assert set(scores["bucket"]) == {"A", "B", "C"}
    ab = scores["bucket"].isin(["A", "B"])
    assert scores.loc[ab, "reason_1"].notna().all()
    assert scores.loc[~ab, ["reason_1", "reason_2", "reason_3"]].isna().all().all()
    assert (scores.loc[scores["bucket"] != "B", "discount_pct"] == 0).all()
    assert (scores.loc[scores["bucket"] == "B", "discount_pct"] > 0).any()
    assert (scores["action"] == scores["bucket"].map(ACTIONS)).all()
    assert (scores["days_to_expiry"] == features["days_to_expiry"].astype(int)).all()
    reasons = pd.unique(scores[["reason_1", "reason_2", "reason_3"]].stack())
    assert len(reasons) > 10
    assert not any("_" in r or r in FEATURE_COLUMNS for r in reasons)  # words, not column names
    np.testing.assert_allclose(scores["churn_probability"], model.predict_proba(features))


def test_score_members_empty_week(model):
    features, _ = synthetic_features(10, seed=5)
    scores = score_members(features.iloc[:0], model, "7", WEEK)
    assert list(scores.columns) == SCORE_COLUMNS and scores.empty


def test_a_per_member_offer_model_decides_bucket_b_discounts(model):
    """With an offer model in the policy, paying bucket-B members get its rung: here a model
    fitted on outcomes where only members who listen are kept by a discount."""
    from churn_assets.marketing.offer_model import fit_offer_model

    features, _ = synthetic_features(3000, seed=5)
    rng = np.random.default_rng(3)
    n = 4000
    active = rng.integers(0, 31, n)
    rung = rng.choice([0, 10, 20, 30], n)
    score = rng.uniform(0.3, 0.7, n)
    logit = np.log(score / (1 - score)) - 2.0 * (rung > 0) * active / 30
    outcomes = pd.DataFrame({"churn_probability": score, "discount_pct": rung, "active_days_30d": active,
                             "is_churn": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)})
    offer_model = fit_offer_model(outcomes, (0, 10, 20, 30))
    policy = ScoringPolicy(a_threshold=0.5, b_threshold=0.15, offer_model=offer_model)
    scores = score_members(features, model, "7", WEEK, policy)
    price = monthly_price(features["last_list_price"], features["last_plan_days"])
    b = (scores["bucket"] == "B").to_numpy() & (price > 0)
    expected = offer_model.choose(scores.loc[b, "churn_probability"], features.loc[b, "active_days_30d"],
                                  price[b], (0, 10, 20, 30))
    np.testing.assert_array_equal(scores.loc[b, "discount_pct"], expected)
    assert (scores.loc[b, "discount_pct"] > 0).any() and (scores.loc[scores["bucket"] != "B", "discount_pct"] == 0).all()
