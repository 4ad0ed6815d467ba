"""Drift policy thresholds (boundaries included) and the concept-drift rule."""
from __future__ import annotations

import math

import pytest

from churn_assets.monitoring.policy import decide, performance_decision


@pytest.mark.parametrize(
    "share, expected",
    [(0.0, "none"), (0.0499, "none"), (0.05, "retrain"), (0.0999, "retrain"), (0.10, "retune"), (1.0, "retune")],
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


VALID = {"auc": 0.80, "log_loss": 0.40}


@pytest.mark.parametrize(
    "realised, expected",
    [
        ({"auc": 0.80, "log_loss": 0.40}, "none"),
        ({"auc": 0.76, "log_loss": 0.44}, "none"),     # inside both margins
        ({"auc": 0.74, "log_loss": 0.40}, "retrain"),  # AUC fell more than 0.05
        ({"auc": 0.80, "log_loss": 0.46}, "retrain"),  # log loss rose more than 0.05
        ({"auc": 0.90, "log_loss": 0.30}, "none"),     # better than validation
        ({"auc": math.nan, "log_loss": 0.41}, "none"),  # one-class month: AUC not compared
        ({"auc": math.nan, "log_loss": 0.60}, "retrain"),
    ],
)
def test_performance_decision(realised, expected):
    assert performance_decision(realised, VALID) == expected


def test_performance_margins_configurable_and_missing_validation_ignored():
    assert performance_decision({"auc": 0.74, "log_loss": 0.4}, VALID, auc_margin=0.1) == "none"
    assert performance_decision({"auc": 0.5, "log_loss": 2.0}, {}) == "none"
    with pytest.raises(ValueError):
        performance_decision({"auc": 0.7}, VALID, auc_margin=-0.1)
