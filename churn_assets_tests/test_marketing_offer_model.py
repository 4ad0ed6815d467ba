"""Bucket B's discount per member (marketing.offer_model) on outcomes drawn from a known world:
the score is the true risk with noise, a rung's effect on the churn logit grows with listening,
and rungs are assigned as the experiment assigns them (control, explored rungs, the policy)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_assets.marketing.offer_model import MIN_OUTCOMES, fit_offer_model
from churn_assets.scoring.offers import DEFAULT_LADDER, DEFAULT_UPLIFT, choose_discount

HORIZON = 6
# the world's logit shift of each rung for a member who listens every day; nothing for one who never does
TRUE_SHIFT = {10: -0.5, 20: -0.8, 30: -1.0}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _world(n: int, seed: int, risk_sd: float = 0.6, score_slope: float = 1.0, score_noise: float = 0.4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-0.2, risk_sd, n)
    active = rng.integers(0, 31, n)
    score = _sigmoid(score_slope * true_logit + rng.normal(0, score_noise, n))  # the model sees the risk with noise
    return pd.DataFrame({"true_logit": true_logit, "active_days_30d": active, "churn_probability": score,
                         "monthly_price": rng.choice([99.0, 149.0, 180.0], n)})


def _truth(world: pd.DataFrame, rung: int, true_shift: dict[int, float] = TRUE_SHIFT) -> np.ndarray:
    shift = true_shift.get(rung, 0.0) * world["active_days_30d"].to_numpy() / 30
    return _sigmoid(world["true_logit"].to_numpy() + shift)


def _experiment(world: pd.DataFrame, seed: int, true_shift: dict[int, float] = TRUE_SHIFT) -> pd.DataFrame:
    """10 % control, 20 % a random rung, the rest the assumed table's rung (a function of the score)."""
    rng = np.random.default_rng(seed + 1)
    u = rng.random(len(world))
    policy = choose_discount(world["churn_probability"], world["monthly_price"], DEFAULT_LADDER, DEFAULT_UPLIFT, HORIZON)
    rung = np.where(u < 0.1, 0, np.where(u < 0.3, rng.choice([10, 20, 30], len(world)), policy))
    p = np.select([rung == d for d in (0, 10, 20, 30)], [_truth(world, d, true_shift) for d in (0, 10, 20, 30)])
    return world.assign(discount_pct=rung, is_churn=(rng.random(len(world)) < p).astype(int))


def _true_revenue(world: pd.DataFrame, discount: np.ndarray, true_shift: dict[int, float] = TRUE_SHIFT) -> float:
    value = world["monthly_price"].to_numpy() * HORIZON
    stay0 = 1 - _truth(world, 0)
    net = {d: value * ((1 - _truth(world, d, true_shift)) * (1 - d / 100) - stay0) for d in (0, 10, 20, 30)}
    return float(sum(net[d][discount == d].sum() for d in net))


def _oracle_discount(world: pd.DataFrame, true_shift: dict[int, float] = TRUE_SHIFT) -> np.ndarray:
    value = world["monthly_price"].to_numpy()[:, None] * HORIZON
    net = np.column_stack([(1 - _truth(world, d, true_shift)) * (1 - d / 100) for d in (0, 10, 20, 30)]) * value
    return np.array([0, 10, 20, 30])[net.argmax(axis=1)]


@pytest.mark.parametrize("seed", [1, 2])
def test_learned_offer_finds_who_a_discount_keeps_and_earns_near_the_optimum(seed):
    model = fit_offer_model(_experiment(_world(20_000, seed), seed), DEFAULT_LADDER)
    assert model is not None and model.n_outcomes == 20_000
    coef = model.coefficients
    # the discount works through listening: the interaction terms carry the (negative) effect
    for d in (10, 20, 30):
        assert coef[f"discount_{d}_x_listening"] < -0.2, coef
    # on new members of the same world: the per-member choice against the truth
    fresh = _world(20_000, seed + 100)
    learned = model.choose(fresh["churn_probability"], fresh["active_days_30d"], fresh["monthly_price"],
                           DEFAULT_LADDER, HORIZON, confidence=0.5)   # on the estimate itself
    cautious = model.choose(fresh["churn_probability"], fresh["active_days_30d"], fresh["monthly_price"],
                            DEFAULT_LADDER, HORIZON)                  # on the default lower bound
    assumed = choose_discount(fresh["churn_probability"], fresh["monthly_price"], DEFAULT_LADDER, DEFAULT_UPLIFT,
                              HORIZON)
    best = _true_revenue(fresh, _oracle_discount(fresh))
    assert best > 0
    assert _true_revenue(fresh, learned) > 0.7 * best                 # the score's noise costs the rest
    assert _true_revenue(fresh, learned) > _true_revenue(fresh, assumed)
    # the lower bound gives up some of it for safety: fewer offers, still earning
    assert 0 < _true_revenue(fresh, cautious) < _true_revenue(fresh, learned)
    assert 0 < (cautious > 0).sum() < (learned > 0).sum()
    # a member who never listens is offered nothing; most who listen daily are offered a rung
    silent, daily = fresh["active_days_30d"].to_numpy() == 0, fresh["active_days_30d"].to_numpy() == 30
    assert (learned[silent] == 0).all() and (learned[daily] > 0).mean() > 0.5


def test_too_few_outcomes_or_an_unmeasured_rung_gives_no_model():
    experiment = _experiment(_world(20_000, 3), 3)
    assert fit_offer_model(None, DEFAULT_LADDER) is None
    assert fit_offer_model(experiment.head(MIN_OUTCOMES - 1), DEFAULT_LADDER) is None
    assert fit_offer_model(experiment[experiment["discount_pct"] != 30], DEFAULT_LADDER) is None


def test_the_prior_keeps_a_rung_that_does_nothing_near_nothing():
    world = _world(2_000, 4)
    experiment = _experiment(world, 4)
    experiment["is_churn"] = (np.random.default_rng(9).random(len(world)) < _truth(world, 0)).astype(int)
    model = fit_offer_model(experiment, DEFAULT_LADDER)
    _, uplift = model.uplift(world["churn_probability"], world["active_days_30d"])
    for d in (10, 20, 30):
        assert abs(model.coefficients[f"discount_{d}"]) < 0.3
        assert np.median(uplift[d]) < 0.1  # nothing to find: barely any would-be churner kept


# A demo-like world: the risk spreads wide but the score sees little of it, and a discount's
# effect sits near the break-even of its cost, so the estimate's noise decides who gets one.
WEAK_SHIFT = {10: -0.3, 20: -0.45, 30: -0.54}


def test_deciding_on_the_lower_bound_does_not_pay_for_the_estimates_noise():
    revenue = {}
    for seed in (1, 2, 3):
        world = _world(3_000, seed, risk_sd=1.2, score_slope=0.4, score_noise=0.8)
        model = fit_offer_model(_experiment(world, seed, WEAK_SHIFT), DEFAULT_LADDER)
        fresh = _world(20_000, seed + 100, risk_sd=1.2, score_slope=0.4, score_noise=0.8)
        best = _true_revenue(fresh, _oracle_discount(fresh, WEAK_SHIFT), WEAK_SHIFT)
        assert best > 0                                                # some members are worth a discount
        for confidence in (0.5, 0.95):
            chosen = model.choose(fresh["churn_probability"], fresh["active_days_30d"], fresh["monthly_price"],
                                  DEFAULT_LADDER, HORIZON, confidence)
            revenue[seed, confidence] = _true_revenue(fresh, chosen, WEAK_SHIFT)
    assert min(revenue[s, 0.5] for s in (1, 2, 3)) < -0.1 * best       # the estimate can lose a lot
    assert all(revenue[s, 0.95] >= 0 for s in (1, 2, 3)), revenue      # the lower bound does not


def test_the_laplace_covariance_is_the_glm_covariance_without_a_prior():
    import statsmodels.api as sm

    from churn_assets.marketing.offer_model import design, listening

    experiment = _experiment(_world(5_000, 5), 5)
    model = fit_offer_model(experiment, DEFAULT_LADDER, prior_sd=1e6)
    x = design(experiment["churn_probability"].to_numpy(), listening(experiment["active_days_30d"].to_numpy()),
               experiment["discount_pct"].to_numpy(), model.rungs)
    glm = sm.GLM(experiment["is_churn"].to_numpy(float), x, family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(model.coefficients.to_numpy(), glm.params, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(model.covariance.to_numpy(), glm.cov_params(), rtol=1e-3, atol=1e-6)
