"""Benchmark: weekly scoring of BENCH_SCALE x 250 k candidates, reasons for A/B only,
against the naive baseline that computes SHAP contributions for every row.

A LightGBM model of ~120 trees is trained on synthetic rows of the feature_spec shape;
the model and the candidates go to a temp dir, and each side runs in its own subprocess
so its peak RSS is its own.

    .venv/bin/python -m benchmarks.bench_scoring
    BENCH_SCALE=0.1 .venv/bin/python -m benchmarks.bench_scoring
"""
from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS
from benchmarks._common import run_worker

CANDIDATES = 250_000
TRAIN_ROWS = 20_000
TREES = 120
WEEK = dt.date(2017, 3, 6)
_CATEGORIES = {
    "last_payment_method": ["41", "40", "36", "39", "38", "32", "35"],
    "gender": ["male", "female"],
    "city": [str(c) for c in range(1, 22)],
    "registered_via": ["7", "9", "3", "4"],
}


def synthetic_features(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame with msno, membership_expire_date and FEATURE_COLUMNS, churn labels)."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({c: rng.gamma(2.0, 10.0, n) for c in NUMERIC_COLUMNS})
    f["last_plan_days"] = rng.choice([30.0, 7.0, 90.0, 180.0], n, p=[0.88, 0.05, 0.04, 0.03])
    f["last_list_price"] = rng.choice([99.0, 129.0, 149.0, 0.0], n)
    f["last_discount_share"] = np.where(rng.random(n) < 0.9, 0.0, rng.uniform(0, 0.5, n))
    f["last_amount_paid"] = f["last_list_price"] * (1 - f["last_discount_share"])
    f["last_is_auto_renew"] = (rng.random(n) < 0.85).astype(float)
    f["last_is_cancel"] = (rng.random(n) < 0.04).astype(float)
    f["days_to_expiry"] = rng.integers(0, 30, n).astype(float)
    f["cancels_90d"] = rng.poisson(0.2, n).astype(float)
    f["secs_trend_7_30"] = rng.lognormal(0, 0.5, n)
    f["days_since_last_log"] = np.where(rng.random(n) < 0.05, np.nan, rng.integers(1, 60, n))
    f["age"] = np.where(rng.random(n) < 0.65, np.nan, rng.integers(15, 60, n))
    for c in CATEGORICAL_COLUMNS:
        values = np.array(_CATEGORIES[c], dtype=object)[rng.integers(0, len(_CATEGORIES[c]), n)]
        f[c] = np.where(rng.random(n) < 0.1, None, values)
    method_risk = f["last_payment_method"].map({"38": 1.5, "32": 2.0, "35": 2.2}).fillna(0.0)
    logit = (
        -4.3 + 2.5 * (1 - f["last_is_auto_renew"]) + 1.8 * f["last_is_cancel"] + 0.6 * f["cancels_90d"]
        + 0.8 * np.log(1 / f["secs_trend_7_30"]) + 0.02 * f["days_since_last_log"].fillna(90) + method_risk
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    f.insert(0, "msno", [f"m{seed}_{i:07d}" for i in range(n)])
    f.insert(1, "membership_expire_date", pd.Timestamp(WEEK) + pd.to_timedelta(f["days_to_expiry"], unit="D"))
    return f, y


class LgbChurnModel:
    """The registry's model interface (predict_proba, contributions) over a raw booster."""

    def __init__(self, booster: lgb.Booster):
        self.booster = booster

    def _x(self, features: pd.DataFrame) -> pd.DataFrame:
        x = features[FEATURE_COLUMNS].copy()
        for c in CATEGORICAL_COLUMNS:
            x[c] = pd.Categorical(x[c], categories=_CATEGORIES[c])
        return x

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self._x(features))

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        values = self.booster.predict(self._x(features), pred_contrib=True)
        return pd.DataFrame(values, columns=[*FEATURE_COLUMNS, "bias"], index=features.index)


def train_model(n: int = TRAIN_ROWS, trees: int = TREES, seed: int = 1) -> LgbChurnModel:
    f, y = synthetic_features(n, seed)
    model = LgbChurnModel(None)  # type: ignore[arg-type]
    data = lgb.Dataset(model._x(f), y, categorical_feature=CATEGORICAL_COLUMNS)
    params = {"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "verbose": -1, "seed": seed}
    model.booster = lgb.train(params, data, num_boost_round=trees)
    return model


def _side(side: str, workdir: Path) -> dict:
    """Run one side in this process and return its figures."""
    from churn_assets.scoring.scores import ScoringPolicy, score_members

    features = pd.read_parquet(workdir / "candidates.parquet")
    model = LgbChurnModel(lgb.Booster(model_file=str(workdir / "model.txt")))
    policy = ScoringPolicy(reason_buckets=("A", "B") if side == "scoring" else ("A", "B", "C"))
    start = time.perf_counter()
    scores = score_members(features, model, "bench", WEEK, policy)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": len(scores),
        "explained": int(scores["reason_1"].notna().sum()),
        "ab_rows": int(scores["bucket"].isin(["A", "B"]).sum()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    n = max(1000, int(CANDIDATES * scale))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        model = train_model(max(5000, int(TRAIN_ROWS * min(1.0, scale * 4))))
        model.booster.save_model(str(workdir / "model.txt"))
        synthetic_features(n, seed=7)[0].to_parquet(workdir / "candidates.parquet")
        print(f"setup: model of {model.booster.num_trees()} trees, {n} candidates, {time.perf_counter() - t0:.1f} s")
        results = {}
        for side in ("scoring", "baseline"):
            results[side] = run_worker("benchmarks.bench_scoring", "--side", side, workdir)
    base = results["baseline"]["seconds"]
    print(f"\n{'side':<34}{'rows':>9}{'explained':>11}{'seconds':>9}{'rows/s':>10}{'peak RSS MB':>13}{'x baseline':>12}")
    labels = {"scoring": "score_members, reasons for A/B", "baseline": "baseline: SHAP for every row"}
    for side, r in results.items():
        print(
            f"{labels[side]:<34}{r['rows']:>9}{r['explained']:>11}{r['seconds']:>9.2f}"
            f"{r['rows'] / r['seconds']:>10.0f}{r['peak_rss_mb']:>13.0f}{base / r['seconds']:>11.2f}x"
        )
    target = "met" if results["scoring"]["seconds"] < 60 * scale else "MISSED"
    print(f"\nA/B share {results['scoring']['ab_rows'] / n:.1%}; target < {60 * scale:.0f} s at this scale: {target}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--side":
        print(json.dumps(_side(sys.argv[2], Path(sys.argv[3]))))
    else:
        main()
