"""Benchmark: the synthetic world generator end to end (simulation, logs, labels, CSV files).

Worlds of BENCH_SCALE x (20 k, 100 k) initial members over 10 months (2016-07..2017-04,
channel_shift from 2017-02). Each world is generated in its own subprocess so its peak RSS
is its own. Baseline, measured in the same run on the same frames: writing the world's
user logs with pandas.DataFrame.to_csv (the writing step alone, no simulation). The ratio
column is generator log rows/s over that baseline; `vs 2M/s` is against the 2 M rows/s goal.
`rows/cpu-s` (log rows per CPU second, all threads) is the figure to compare on a shared
machine: wall time there depends on what else runs; the machine's load is printed first.

    .venv/bin/python -m benchmarks.bench_generator
    BENCH_SCALE=0.1 .venv/bin/python -m benchmarks.bench_generator
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from benchmarks._common import run_worker

SIZES = (20_000, 100_000)
TARGET_ROWS_PER_S = 2_000_000


def _child(members: int, out: str) -> None:
    """Generate one world and print its figures as JSON (runs in a subprocess)."""
    from churn_assets.synthetic.simulator import generate_world

    cpu0 = time.process_time()
    summary = generate_world(out, members=members, progress=False)
    cpu = time.process_time() - cpu0
    print(json.dumps({"rows": summary["rows"], "seconds": summary["seconds"], "cpu": cpu,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _pandas_child(out: str) -> None:
    """Baseline: write the same user-log frames with pandas.to_csv (timed part only)."""
    import pyarrow.csv as pacsv

    files = sorted(Path(out, "landing").glob("*/userlogs.csv"))
    frames = [pacsv.read_csv(f).to_pandas() for f in files]
    rows = sum(len(f) for f in frames)
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        frame.to_csv(Path(out, f"pandas_{i}.csv"), index=False)
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - t0}))


def _run(*args: str) -> dict:
    return run_worker("benchmarks.bench_generator", *args)


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    print(f"generator benchmark, BENCH_SCALE={scale}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    header = (f"{'members':>8} {'log rows':>10} {'all rows':>10} {'seconds':>8} {'cpu s':>7} "
              f"{'log rows/s':>11} {'rows/cpu-s':>11} {'peak MB':>8} {'pandas rows/s':>14} {'ratio':>6} "
              f"{'vs 2M/s':>8}")
    print(header)
    print("-" * len(header))
    for size in SIZES:
        members = max(500, round(size * scale))
        with tempfile.TemporaryDirectory() as tmp:
            gen = _run("--child", str(members), tmp)
            base = _run("--pandas", tmp)
        log_rows = gen["rows"]["userlogs"]
        rate = log_rows / gen["seconds"]
        base_rate = base["rows"] / base["seconds"]
        print(f"{members:>8} {log_rows:>10,} {sum(gen['rows'].values()):>10,} {gen['seconds']:>8.2f} "
              f"{gen['cpu']:>7.2f} {rate:>11,.0f} {log_rows / gen['cpu']:>11,.0f} {gen['peak_mb']:>8.0f} "
              f"{base_rate:>14,.0f} "
              f"{rate / base_rate:>6.2f} {rate / TARGET_ROWS_PER_S:>8.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--pandas":
        _pandas_child(sys.argv[2])
    else:
        main()
