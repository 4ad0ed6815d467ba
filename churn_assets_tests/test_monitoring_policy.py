"""Drift policy thresholds (boundaries included) and the concept-drift rule."""
from __future__ import annotations

import math

import pytest

from churn_assets.monitoring.policy import (
    decide, drift_level, drift_policy, performance_decision, persisted_decision, previous_level_for,
    replay_drift_policy,
)


@pytest.mark.parametrize(
    "share, expected",
    [(0.0, "none"), (0.0099, "none"), (0.01, "retrain"), (0.2499, "retrain"), (0.25, "retune"), (1.0, "retune")],
)
def test_default_levels_and_boundaries(share, expected):
    assert decide(share) == expected


def test_thresholds_are_configurable():
    assert decide(0.15, retrain_at=0.2, retune_at=0.4) == "none"
    assert decide(0.2, retrain_at=0.2, retune_at=0.4) == "retrain"
    assert decide(0.4, retrain_at=0.2, retune_at=0.4) == "retune"


@pytest.mark.parametrize("retrain_at, retune_at", [(0.1, 0.05), (0.1, 0.1), (0.0, 0.1), (-0.1, 0.2), (0.1, 1.5)])
def test_invalid_thresholds_rejected(retrain_at, retune_at):
    with pytest.raises(ValueError):
        decide(0.01, retrain_at=retrain_at, retune_at=retune_at)


@pytest.mark.parametrize("share", [-0.01, 1.01, math.nan])
def test_invalid_share_rejected(share):
    with pytest.raises(ValueError):
        decide(share)


T = {"retrain_at": 0.05, "retune_at": 0.20, "hysteresis": 0.2}


def decisions(shares, versions=None, **kw):
    weeks = zip(shares, versions or ["1"] * len(shares))
    return [decision for _, decision in replay_drift_policy(weeks, **{**T, **kw})]


def test_one_week_blip_does_not_act_two_weeks_do():
    assert decisions([0.0, 0.12, 0.0, 0.0]) == ["none", "none", "none", "none"]
    assert decisions([0.0, 0.12, 0.12, 0.0]) == ["none", "none", "retrain", "none"]
    assert decisions([0.3, 0.3, 0.3]) == ["none", "retune", "retune"]


def test_decision_is_the_lower_of_two_consecutive_levels():
    assert decisions([0.08, 0.3, 0.3]) == ["none", "retrain", "retune"]
    assert decisions([0.3, 0.08]) == ["none", "retrain"]
    assert persisted_decision("retune", "retrain") == "retrain"
    assert persisted_decision("retune", None) == "none"


def test_hysteresis_keeps_a_level_from_flapping():
    hovering = [0.052, 0.047, 0.051, 0.045, 0.049, 0.053, 0.046]  # around retrain_at = 0.05
    levels = [level for level, _ in replay_drift_policy(zip(hovering, ["1"] * 7), **T)]
    assert levels == ["retrain"] * 7
    assert decisions(hovering) == ["none"] + ["retrain"] * 6
    # without hysteresis the same shares flap and never persist two weeks
    assert decisions(hovering, hysteresis=0.0) == ["none"] * 7
    # it holds only down to (1 - hysteresis) x the threshold, and only what was reached
    assert drift_level(0.039, "retrain", **T) == "none"
    assert drift_level(0.17, "retune", **T) == "retune" and drift_level(0.159, "retune", **T) == "retrain"
    assert drift_level(0.045, None, **T) == "none" and drift_level(0.17, "retrain", **T) == "retrain"


def test_a_new_model_version_starts_afresh():
    versions = ["1", "1", "2", "2", "2"]
    assert decisions([0.3, 0.3, 0.3, 0.3, 0.0], versions) == ["none", "retune", "none", "retune", "none"]
    # hysteresis does not carry over a model change either
    assert [lv for lv, _ in replay_drift_policy(zip([0.06, 0.045], ["1", "2"]), **T)] == ["retrain", "none"]


def test_previous_level_comes_from_the_same_version_only():
    assert previous_level_for({"model_version": "3", "level": "retune", "decision": "retrain"}, "3") == "retune"
    assert previous_level_for({"model_version": 3, "level": "retrain"}, "3") == "retrain"
    assert previous_level_for({"model_version": "3", "level": "retune"}, "4") is None
    assert previous_level_for({"model_version": "3", "level": math.nan, "decision": "retrain"}, "3") == "retrain"
    assert previous_level_for(None, "3") is None
    assert drift_policy(0.3, previous_level_for({"model_version": "2", "level": "retune"}, "3"), **T) == ("retune", "none")


@pytest.mark.parametrize("hysteresis", [-0.1, 1.0, math.nan])
def test_invalid_hysteresis_rejected(hysteresis):
    with pytest.raises(ValueError):
        drift_level(0.1, "retrain", hysteresis=hysteresis)
    with pytest.raises(ValueError):
        drift_level(0.1, "sometimes")


VALID = {"auc": 0.80, "relative_log_loss": 0.75}


@pytest.mark.parametrize(
    "realised, expected",
    [
        ({"auc_ci_high": 0.80, "relative_log_loss": 0.75}, "none"),
        ({"auc_ci_high": 0.781, "relative_log_loss": 0.79}, "none"),    # inside both margins
        ({"auc_ci_high": 0.779, "relative_log_loss": 0.75}, "retrain"),  # whole AUC interval 0.02 below
        ({"auc_ci_high": 0.80, "relative_log_loss": 0.81}, "retrain"),  # skill lost beyond 0.05
        ({"auc_ci_high": 0.90, "relative_log_loss": 0.60}, "none"),     # better than validation
        ({"auc_ci_high": math.nan, "relative_log_loss": 0.76}, "none"),  # one-class month: nothing ranked
        ({"auc_ci_high": math.nan, "relative_log_loss": 1.10}, "retrain"),
        ({"auc_ci_high": 0.70, "relative_log_loss": None}, "retrain"),
        ({"auc_ci_high": None, "relative_log_loss": math.nan}, "none"),
    ],
)
def test_performance_decision(realised, expected):
    assert performance_decision(realised, VALID) == expected


def test_performance_decision_ignores_raw_log_loss_and_the_point_estimate():
    # a higher base rate raises raw log loss; a noisy month can put the estimate low while the
    # interval still reaches the validation AUC: neither is a reason to retrain
    realised = {"auc": 0.70, "auc_ci_high": 0.79, "log_loss": 0.90, "relative_log_loss": 0.76}
    assert performance_decision(realised, {**VALID, "log_loss": 0.30}) == "none"


def test_performance_margins_configurable_and_missing_validation_ignored():
    assert performance_decision({"auc_ci_high": 0.74, "relative_log_loss": 0.75}, VALID, auc_margin=0.1) == "none"
    assert performance_decision({"auc_ci_high": 0.80, "relative_log_loss": 0.85}, VALID,
                                relative_log_loss_margin=0.2) == "none"
    assert performance_decision({"auc_ci_high": 0.5, "relative_log_loss": 2.0}, {}) == "none"
    assert performance_decision({"auc_ci_high": 0.5}, {"auc": math.nan, "relative_log_loss": math.nan}) == "none"
    with pytest.raises(ValueError):
        performance_decision({"auc_ci_high": 0.7}, VALID, auc_margin=-0.1)
    with pytest.raises(ValueError):
        performance_decision({"auc_ci_high": 0.7}, VALID, relative_log_loss_margin=math.nan)
