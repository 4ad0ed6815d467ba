"""Raw ingestion throughput: load_drop_file vs pandas.read_csv + DuckDB, one month of drops.

A 1 M-member month (BENCH_SCALE=1): members 1 M rows, transactions 1.1 M, user_logs 17 M,
written with DuckDB COPY from range(). Each (method, source) runs in a fresh subprocess
so its peak RSS is its own. The baseline only parses and stores (no validation, no
quarantine, no line numbers); ours does all of that, in one transaction.

    .venv/bin/python -m benchmarks.bench_ingest          # BENCH_SCALE=0.1 for a quick run
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

import duckdb
from benchmarks._common import run_worker

MONTH = dt.date(2017, 3, 1)
SIZES = {"members": 1_000_000, "transactions": 1_100_000, "user_logs": 17_000_000}
FILES = {"members": "members_profile.csv", "transactions": "transactions_logs.csv", "user_logs": "userlogs.csv"}

# range()-generated rows in the public format; a few dirty values like the real files.
GENERATORS = {
    "members": """
        SELECT md5(i::VARCHAR)[:22] || '=' AS msno, 1 + i % 22 AS city,
               CASE WHEN i % 3 = 0 THEN 18 + i % 40 WHEN i % 50 = 1 THEN 1900 + i % 100 ELSE 0 END AS bd,
               CASE i % 6 WHEN 0 THEN 'male' WHEN 1 THEN 'female' ELSE NULL END AS gender,
               [7, 9, 3, 4][1 + i % 4] AS registered_via,
               strftime(DATE '2005-01-01' + (i % 4500)::INT, '%Y%m%d') AS registration_init_time
        FROM range({n}) t(i)""",
    "transactions": """
        SELECT md5((i % {members})::VARCHAR)[:22] || '=' AS msno, [41, 40, 36, 39, 38][1 + i % 5] AS payment_method_id,
               30 AS payment_plan_days, [99, 129, 149][1 + i % 3] AS plan_list_price,
               [99, 129, 149][1 + i % 3] AS actual_amount_paid, (i % 7 <> 0)::INT AS is_auto_renew,
               strftime(DATE '2017-03-01' + (i % 31)::INT, '%Y%m%d') AS transaction_date,
               strftime(DATE '2017-03-01' + (i % 31)::INT + 30 - (i % 40 = 0)::INT * 32, '%Y%m%d')
                   AS membership_expire_date,
               (i % 40 = 0)::INT AS is_cancel
        FROM range({n}) t(i)""",
    "user_logs": """
        SELECT md5((i % {members})::VARCHAR)[:22] || '=' AS msno,
               strftime(DATE '2017-03-01' + (i // {members})::INT % 31, '%Y%m%d') AS date,
               (i * 7) % 13 AS num_25, (i * 3) % 5 AS num_50, i % 4 AS num_75, i % 3 AS num_985,
               (i * 11) % 60 AS num_100, (i * 13) % 70 AS num_unq,
               CASE WHEN i % 5000 = 0 THEN -9223372036854775.808 ELSE round(((i * 7919) % 86400) + 0.123, 3) END
                   AS total_secs
        FROM range({n}) t(i)""",
}


def _scale() -> float:
    return float(os.environ.get("BENCH_SCALE", "1.0"))


def write_month(folder: Path, scale: float) -> dict[str, tuple[Path, int]]:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    members = max(1, int(SIZES["members"] * scale))
    out = {}
    for source, sql in GENERATORS.items():
        n = max(1, int(SIZES[source] * scale))
        path = folder / FILES[source]
        con.execute(f"COPY ({sql.format(n=n, members=members)}) TO '{path}' (HEADER, DELIMITER ',')")
        out[source] = (path, n)
    con.close()
    return out


def _worker(method: str, source: str, path: str, db: str) -> None:
    """Runs in a subprocess; prints one JSON line."""
    import pandas as pd

    from churn_assets.ingest.loading import load_drop_file

    con = duckdb.connect(db)
    con.execute("SET enable_progress_bar = false")
    t = time.perf_counter()  # imports excluded: both methods import pandas
    if method == "ours":
        r = load_drop_file(con, source, Path(path), MONTH)
        rows, extra = r.rows_loaded, {"quarantined": r.rows_quarantined}
    else:
        df = pd.read_csv(path)
        con.execute("CREATE TABLE baseline AS SELECT * FROM df")
        rows, extra = len(df), {}
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak_mb, **extra}))


def _run(method: str, source: str, path: Path, tmp: Path) -> dict:
    db = tmp / f"{method}_{source}.duckdb"
    result = run_worker("benchmarks.bench_ingest", "--worker", method, source, path, db)
    db.unlink(missing_ok=True)
    return result


def main() -> None:
    scale = _scale()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        files = write_month(tmp, scale)
        print(f"BENCH_SCALE={scale}: wrote one month of drops in {time.perf_counter() - t:.1f} s "
              f"({', '.join(f'{s} {n:,}' for s, (_, n) in files.items())} rows)\n")
        header = (f"{'source':<13}{'rows':>12}{'ours s':>9}{'ours rows/s':>13}{'ours MB':>9}"
                  f"{'pandas s':>10}{'pandas rows/s':>15}{'pandas MB':>11}{'speed x':>9}{'mem x':>7}")
        print(header)
        print("-" * len(header))
        for source, (path, n) in files.items():
            ours = _run("ours", source, path, tmp)
            base = _run("pandas", source, path, tmp)
            assert ours["rows"] + ours["quarantined"] == n, (source, ours, n)
            print(f"{source:<13}{n:>12,}{ours['seconds']:>9.1f}{n / ours['seconds']:>13,.0f}{ours['peak_mb']:>9,.0f}"
                  f"{base['seconds']:>10.1f}{n / base['seconds']:>15,.0f}{base['peak_mb']:>11,.0f}"
                  f"{base['seconds'] / ours['seconds']:>9.2f}{base['peak_mb'] / ours['peak_mb']:>7.2f}")
        print("\nspeed x / mem x > 1: load_drop_file is faster / uses less memory than the pandas baseline;"
              "\nours also types, validates, quarantines and replaces the partition in one transaction.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:6])
    else:
        main()
