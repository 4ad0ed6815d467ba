"""Quality of churn probabilities against 0/1 labels: one definition for the training run's
validation metrics (model.training.evaluate) and the realised quality of scored months
(monitoring.performance.quality).

A metric that has no value on the data is NaN ("undefined"), never 0: AUC and PR-AUC of a
one-class group, recall_a without churners, precision_a with an empty bucket A. A 0 would
read as "every call was wasted" and would drag averages and plots down; NaN is left out of
them and shows as a gap in the Dagster and MLflow charts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from churn_assets.core.buckets import A_THRESHOLD

PROBABILITY_EPS = 1e-15  # log loss clips probabilities to [eps, 1 - eps]
METRIC_NAMES = ("auc", "pr_auc", "log_loss", "brier", "ece", "recall_a", "precision_a", "lift_top_decile")


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability table over `bins` equal-width probability bins (empty bins dropped)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    keep = count > 0
    edges = np.arange(bins + 1) / bins
    return pd.DataFrame({
        "bin": np.arange(bins)[keep],
        "lower": edges[:-1][keep],
        "upper": edges[1:][keep],
        "count": count[keep],
        "mean_predicted": sum_p[keep] / count[keep],
        "observed_rate": sum_y[keep] / count[keep],
    })


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width bins of |observed rate - mean prediction| weighted by bin share."""
    t = calibration_table(y, p, bins)
    if t.empty:
        return float("nan")
    return float((t["count"] * (t["observed_rate"] - t["mean_predicted"]).abs()).sum() / t["count"].sum())


def classification_metrics(y: np.ndarray, p: np.ndarray, a_threshold: float = A_THRESHOLD) -> dict[str, float]:
    """METRIC_NAMES for labels y (0/1) and churn probabilities p: auc, pr_auc, log_loss, brier,
    ece, recall_a (share of churners in bucket A, p >= a_threshold), precision_a (churn rate
    inside bucket A), lift_top_decile (churn rate of the top 10 % / overall). NaN where undefined."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    both_classes = len(np.unique(y)) == 2
    in_a = p >= a_threshold
    positives = y.sum()
    top = np.argsort(-p, kind="stable")[: max(1, int(np.ceil(0.1 * len(p))))]
    base_rate = y.mean() if len(y) else float("nan")
    return {
        "auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, PROBABILITY_EPS, 1 - PROBABILITY_EPS), labels=[0, 1])),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "recall_a": float(y[in_a].sum() / positives) if positives else float("nan"),
        "precision_a": float(y[in_a].mean()) if in_a.any() else float("nan"),
        "lift_top_decile": float(y[top].mean() / base_rate) if base_rate else float("nan"),
    }
