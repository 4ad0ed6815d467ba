"""Benchmark: one weekly drift report, Evidently's tests called directly vs the DataDriftPreset.

Synthetic frames of the feature_spec shape (BENCH_SCALE x 50k rows x 33 feature columns,
the current side shifted in 2 columns); both sides are sampled to 5000 rows first, as the
asset does, so the per-week cost does not grow with the population. Each variant runs in
its own subprocess (peak RSS its own, imports paid equally and not timed) and is timed as
the median of REPEATS calls:

  preset        baseline, the old weekly path: DataDriftPreset report with tests (which
                carry the per-column verdicts) + save_html, every week
  numbers       compute_drift: per-column Evidently tests (Evidently's choice and default
                thresholds), gain weights: every week's cost when the decision is 'none'
  numbers+html  compute_drift + render_drift_html (the preset with the same methods and
                thresholds): the cost of a week that asks for action
  calibration   resolve_methods + calibrate_thresholds over 4 training months and 13
                stationary weeks: once per model version (cached in monitoring.drift_thresholds)

    .venv/bin/python -m benchmarks.bench_drift
    BENCH_SCALE=0.2 .venv/bin/python -m benchmarks.bench_drift

Targets: numbers well under a second a week at 5k x 33 (< 0.5 s), and the same drifted
columns as the preset (same tests, same samples).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from benchmarks._common import run_worker

ROWS = 50_000
SAMPLE_SIZE = 5000
REPEATS = 3
SHIFTED = ["secs_30d", "registered_via"]
TARGET_SECONDS = 0.5
MONTHS = ["2016-11-01", "2016-12-01", "2017-01-01", "2017-02-01"]
STATIONARY_WEEKS = 13
VARIANTS = ("preset", "numbers", "numbers+html", "calibration")


def synthetic_features(n: int, seed: int, shift: bool) -> pd.DataFrame:
    """FEATURE_COLUMNS with plausible marginals: counts, money, shares, NULLs, categories."""
    from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.gamma(2.0, 10.0, n) for c in NUMERIC_COLUMNS})
    frame["age"] = np.where(rng.random(n) < 0.6, np.nan, rng.normal(29, 8, n))
    frame["days_since_last_log"] = np.where(rng.random(n) < 0.1, np.nan, rng.exponential(5, n))
    frame["last_discount_share"] = rng.beta(1, 9, n)
    channels = ["7", "9", "3", "4", "13"]
    for c in CATEGORICAL_COLUMNS:
        frame[c] = rng.choice(channels, n)
    frame["gender"] = rng.choice(["male", "female", None], n, p=[0.2, 0.2, 0.6])
    if shift:
        frame["secs_30d"] = frame["secs_30d"] * 0.6  # listening drops
        frame["registered_via"] = rng.choice(channels, n, p=[0.1, 0.1, 0.2, 0.2, 0.4])  # sign-up mix moves
    return frame


def _importance(columns: list[str]) -> pd.DataFrame:
    gains = np.random.default_rng(5).gamma(1.0, 1.0, len(columns))
    return pd.DataFrame({"feature": columns, "gain": gains})


def _worker(variant: str, rows: int) -> dict:
    warnings.filterwarnings("ignore")
    from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS

    reference = synthetic_features(rows, 1, shift=False)
    reference["target_month"] = pd.to_datetime(np.resize(MONTHS, rows)).date
    current = synthetic_features(rows, 2, shift=True)
    weeks = {k: synthetic_features(max(1000, rows // 4), 10 + k, shift=False) for k in range(STATIONARY_WEEKS)}
    import_start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from churn_assets.monitoring.drift import (
        _prepare, calibrate_thresholds, compute_drift, feature_weights, render_drift_html, resolve_methods,
        sample_rows, value_drifts,
    )

    import_seconds = time.perf_counter() - import_start
    weights, _ = feature_weights(_importance(FEATURE_COLUMNS), FEATURE_COLUMNS)
    num, cat = NUMERIC_COLUMNS, CATEGORICAL_COLUMNS
    drifted: list[str] = []

    def once(html: Path) -> None:
        nonlocal drifted
        if variant == "preset":
            ref = _prepare(sample_rows(reference, SAMPLE_SIZE, 0), num, cat)
            cur = _prepare(sample_rows(current, SAMPLE_SIZE, 0), num, cat)
            definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
            snapshot = Report([DataDriftPreset(columns=num + cat)], include_tests=True).run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
            snapshot.save_html(str(html))
            columns = value_drifts(snapshot)
            drifted = sorted(columns.loc[columns["drifted"], "column_name"])
        elif variant == "calibration":
            methods = resolve_methods(reference, num, cat, sample_size=SAMPLE_SIZE)
            calibrate_thresholds(reference, num, cat, methods, sample_size=SAMPLE_SIZE, stationary_weeks=weeks)
        else:
            result = compute_drift(reference, current, num, cat, sample_size=SAMPLE_SIZE, seed=0, weights=weights)
            drifted = sorted(result.columns.loc[result.columns["drifted"], "column_name"])
            if variant == "numbers+html":
                render_drift_html(reference, current, num, cat, result, html, sample_size=SAMPLE_SIZE, seed=0)

    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        times, cpu = [], []
        for _ in range(REPEATS):
            start, cpu_start = time.perf_counter(), time.process_time()
            once(html)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
        html_mb = html.stat().st_size / 1e6 if html.exists() else 0.0
    return {
        "variant": variant, "rows": rows, "seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu),
        "import_seconds": import_seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "drifted": drifted, "html_mb": html_mb,
    }


def _run(variant: str, rows: int) -> dict:
    return run_worker("benchmarks.bench_drift", "--worker", variant, rows)


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    rows = max(2000, int(ROWS * scale))
    results = {v: _run(v, rows) for v in VARIANTS}
    base = results["preset"]
    print(f"drift report: {rows} rows/side x 33 feature columns, sampled to {min(rows, SAMPLE_SIZE)}, "
          f"shifted {SHIFTED}; median of {REPEATS}")
    print(f"{'variant':<13} {'seconds':>8} {'CPU s':>7} {'vs preset':>10} {'peak RSS MB':>12} {'HTML MB':>8}  drifted columns")
    for r in results.values():
        ratio = base["seconds"] / r["seconds"]
        print(f"{r['variant']:<13} {r['seconds']:>8.3f} {r['cpu_seconds']:>7.3f} {ratio:>9.1f}x {r['peak_rss_mb']:>12.0f} "
              f"{r['html_mb']:>8.1f}  {', '.join(r['drifted'])}")
    numbers = results["numbers"]
    verdict = "met" if numbers["seconds"] < TARGET_SECONDS else "MISSED"
    print(f"target numbers < {TARGET_SECONDS} s a week: {verdict}; same drifted columns as the preset: "
          f"{numbers['drifted'] == base['drifted']}; evidently import (not timed): {numbers['import_seconds']:.1f} s; "
          f"calibration ({len(MONTHS)} months + {STATIONARY_WEEKS} weeks) is paid once per model version")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
