"""Benchmark: one weekly drift report, sampled compute_drift vs the full DataDriftPreset.

Synthetic frames of the feature_spec shape (50k rows x 33 feature columns at
BENCH_SCALE=1, the current side shifted in 2 columns). Measured, each in its own
subprocess so peak RSS is its own and imports are paid equally:

  sampled   compute_drift(..., sample_size=5000) with the HTML written (what the asset runs)
  baseline  DataDriftPreset on the full, unsampled frames, HTML written too

    .venv/bin/python -m benchmarks.bench_drift
    BENCH_SCALE=0.2 .venv/bin/python -m benchmarks.bench_drift

Target: the sampled report under 15 s at 50k rows.
"""
from __future__ import annotations

import json
import os
import resource
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
SHIFTED = ["secs_30d", "registered_via"]
TARGET_SECONDS = 15.0


def synthetic_features(n: int, seed: int, shift: bool) -> pd.DataFrame:
    """FEATURE_COLUMNS with plausible marginals: counts, money, shares, NULLs, categories."""
    from churn_assets.features.feature_spec import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

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


def _worker(variant: str, rows: int) -> dict:
    warnings.filterwarnings("ignore")
    from churn_assets.features.feature_spec import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

    reference = synthetic_features(rows, 1, shift=False)
    current = synthetic_features(rows, 2, shift=True)
    import_start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from churn_assets.monitoring.drift import _value_drifts, compute_drift

    import_seconds = time.perf_counter() - import_start
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        start, cpu_start = time.perf_counter(), time.process_time()
        if variant == "sampled":
            result = compute_drift(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS,
                                   sample_size=SAMPLE_SIZE, seed=0, html_path=html)
            drifted = result.columns.loc[result.columns["drifted"], "column_name"].tolist()
        else:
            definition = DataDefinition(numerical_columns=NUMERIC_COLUMNS, categorical_columns=CATEGORICAL_COLUMNS)
            snapshot = Report([DataDriftPreset()], include_tests=True).run(
                Dataset.from_pandas(current, data_definition=definition),
                Dataset.from_pandas(reference, data_definition=definition),
            )
            snapshot.save_html(str(html))
            columns = _value_drifts(snapshot)
            drifted = columns.loc[columns["drifted"], "column_name"].tolist()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        html_mb = html.stat().st_size / 1e6
    return {
        "variant": variant, "rows": rows, "seconds": seconds, "cpu_seconds": cpu_seconds, "import_seconds": import_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "drifted": sorted(drifted), "html_mb": html_mb,
    }


def _run(variant: str, rows: int) -> dict:
    return run_worker("benchmarks.bench_drift", "--worker", variant, rows)


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    rows = max(2000, int(ROWS * scale))
    sampled, baseline = _run("sampled", rows), _run("baseline", rows)
    print(f"drift report: {rows} rows x 33 feature columns, shifted {SHIFTED}, sample {SAMPLE_SIZE}")
    print(f"{'variant':<10} {'rows/side':>10} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>12} {'HTML MB':>8}  drifted columns")
    for r in (baseline, sampled):
        used = min(rows, SAMPLE_SIZE) if r["variant"] == "sampled" else rows
        print(f"{r['variant']:<10} {used:>10} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} {r['peak_rss_mb']:>12.0f} {r['html_mb']:>8.1f}  {', '.join(r['drifted'])}")
    print(f"speed-up (baseline / sampled): {baseline['seconds'] / sampled['seconds']:.2f}x; "
          f"memory ratio: {baseline['peak_rss_mb'] / sampled['peak_rss_mb']:.2f}x; "
          f"evidently import (not timed above): {sampled['import_seconds']:.1f} s")
    verdict = "met" if sampled["seconds"] < TARGET_SECONDS else "MISSED"
    print(f"target sampled < {TARGET_SECONDS:.0f} s: {verdict}; same drifted columns: {sampled['drifted'] == baseline['drifted']}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
