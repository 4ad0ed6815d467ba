"""Benchmark: one refit and one 20-trial retune of the churn model, against the ceiling.

World: BENCH_SCALE x 20k candidates per month over 5 months (churn_assets.model.toy: a
known true churn probability per row, the oracle). Train on 3 months (2 fit + 1 early
stop/calibration), validate on the 5th. Quality is compared, on the same hold-out month,
with the oracle (true probabilities, including logit noise no model can see), with the
features-only oracle (E[true p | features]: the real ceiling of any model here) and with
the logistic baseline trained in the same run. Targets: AUC >= 0.98 x oracle, log loss <= 1.05 x
oracle, ECE <= 0.02. Also times logging + registering into a throw-away MLflow store.

    .venv/bin/python -m benchmarks.bench_model
    BENCH_SCALE=0.25 BENCH_TRIALS=5 .venv/bin/python -m benchmarks.bench_model
"""
from __future__ import annotations

import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from churn_assets.model.data import load_training_frame
from churn_assets.model.toy import write_toy_world
from churn_assets.model.training import evaluate, train_churn_model
from churn_assets.model.tuning import tune

MONTHS = [dt.date(2017, m, 1) for m in range(1, 6)]
TRAIN, VALID = MONTHS[1:4], MONTHS[4]
TARGET_AUC, TARGET_LL, TARGET_ECE = 0.98, 1.05, 0.02


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    trials = int(os.environ.get("BENCH_TRIALS", "20"))
    members = max(500, int(20_000 * scale))
    con = duckdb.connect()
    oracle, t_world = _timed(write_toy_world, con, MONTHS, members, 2024)
    frame = load_training_frame(con, [*TRAIN, VALID])

    refit, t_refit = _timed(train_churn_model, frame, None, TRAIN, VALID)
    (best, study), t_tune = _timed(tune, frame, TRAIN, VALID, trials, None, 0)
    retuned, t_retrain = _timed(train_churn_model, frame, best, TRAIN, VALID)

    with tempfile.TemporaryDirectory() as tmp:
        from mlflow.tracking import MlflowClient

        from churn_assets.model.registry import automated_tests, log_training

        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        MlflowClient(uri).search_experiments()  # schema creation is a one-off, not per model
        logged, t_log = _timed(log_training, refit, uri, Path(tmp, "artifacts").as_uri())
        _, t_gate = _timed(automated_tests, MlflowClient(uri), logged.version, refit, 0.0, 10.0)

    truth = oracle[oracle["target_month"] == VALID]
    ceiling = evaluate(truth["is_churn"], truth["true_churn_probability"])
    observable = evaluate(truth["is_churn"], truth["observable_churn_probability"])
    rows = [
        ("oracle (true p)", ceiling, float("nan")),
        ("oracle, features only", observable, float("nan")),
        ("logistic baseline", refit.baseline_metrics, float("nan")),
        ("lightgbm refit", refit.metrics, t_refit),
        (f"lightgbm retune ({trials} trials)", retuned.metrics, t_tune + t_retrain),
    ]
    print(f"model benchmark: {members} candidates/month x {len(MONTHS)} months (BENCH_SCALE={scale}), "
          f"fit rows {len(frame[frame['target_month'].isin(TRAIN[:-1])])}, world built in {t_world:.1f} s")
    print(f"{'model':<28} {'auc':>7} {'auc/or':>7} {'auc/obs':>7} {'logloss':>8} {'ll/or':>6} {'ll/obs':>6} "
          f"{'ece':>6} {'brier':>7} {'seconds':>8}")
    for name, m, secs in rows:
        print(f"{name:<28} {m['auc']:7.4f} {m['auc'] / ceiling['auc']:7.3f} {m['auc'] / observable['auc']:7.3f} "
              f"{m['log_loss']:8.4f} {m['log_loss'] / ceiling['log_loss']:6.3f} {m['log_loss'] / observable['log_loss']:6.3f} "
              f"{m['ece']:6.4f} {m['brier']:7.4f} {secs:8.1f}")
    print("or = oracle (true p); obs = features-only oracle")
    print(f"retune: search {t_tune:.1f} s ({len(study)} trials, {(study['state'] == 'PRUNED').sum()} pruned) "
          f"+ final fit {t_retrain:.1f} s; refit / baseline-included fit {t_refit:.1f} s")
    print(f"MLflow log + register {t_log:.1f} s, automated gate {t_gate:.1f} s")
    for name, m in (("refit", refit.metrics), ("retune", retuned.metrics)):
        for label, ref in (("oracle", ceiling), ("features-only oracle", observable)):
            ok = (m["auc"] >= TARGET_AUC * ref["auc"], m["log_loss"] <= TARGET_LL * ref["log_loss"])
            print(f"targets {name} vs {label}: auc>={TARGET_AUC}x {ok[0]}, logloss<={TARGET_LL}x {ok[1]}, "
                  f"ece<={TARGET_ECE} {m['ece'] <= TARGET_ECE}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
