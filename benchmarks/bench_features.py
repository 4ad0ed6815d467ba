"""Benchmark: point-in-time member features, DuckDB query vs the pandas baseline.

BENCH_SCALE x 1 M members, 90 days of listening logs (~60 M rows at scale 1) and about a
year of monthly transactions, generated inside DuckDB from hash() of fixed seeds (so the
data does not depend on thread scheduling) and stored in a DuckDB file under a temp dir.
Each side runs in its own subprocess so its peak RSS is its own; pandas loads the tables
from the same file (load time reported apart from the feature computation).

    .venv/bin/python -m benchmarks.bench_features            # full scale
    BENCH_SCALE=0.05 .venv/bin/python -m benchmarks.bench_features

Pandas at full scale needs ~15+ GB and many minutes, so by default it runs at
BENCH_PANDAS_SCALE (default min(BENCH_SCALE, 0.1)) on a second data set, where DuckDB is
timed too: the ratio is taken there, like for like. BENCH_PANDAS_SCALE=1 forces full scale.
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

AS_OF = dt.date(2017, 4, 1)
LOG_DAYS = 90
SEED = 20180101
_RAW_SCHEMA_SQL = Path(__file__).parents[1] / "churn_assets" / "ingest" / "raw_schema.sql"

# u(a, b) in [0, 1): deterministic pseudo-random number from a hash of the arguments
_MACROS = f"""
CREATE OR REPLACE TEMP MACRO u(a, b) AS (hash(a, b, {SEED}) % 1000003) / 1000003.0;
"""

_GEN_MEMBERS = """
CREATE TABLE gen_members AS
SELECT
    i,
    to_base64(unhex(sha256(CAST(i AS VARCHAR)))) AS msno,   -- 44 characters like KKBox ids
    least(1, 0.25 + 0.85 * u(i, 1)) AS engagement,          -- share of days with listening
    CAST(floor(u(i, 2) * 13) AS INTEGER) AS first_month      -- months of history skipped
FROM range($n) t(i)
"""

_MEMBERS = """
INSERT INTO raw.members
SELECT
    msno,
    CAST(1 + floor(u(i, 3) * 21) AS INTEGER),
    CASE WHEN u(i, 4) < 0.35 THEN CAST(15 + floor(u(i, 5) * 45) AS INTEGER)
         WHEN u(i, 4) < 0.9 THEN 0 ELSE CAST(-50 + floor(u(i, 5) * 3000) AS INTEGER) END,
    CASE WHEN u(i, 6) < 0.65 THEN NULL WHEN u(i, 6) < 0.83 THEN 'male' ELSE 'female' END,
    [7, 9, 3, 4][CAST(1 + floor(u(i, 7) * 4) AS INTEGER)],
    DATE '2010-01-01' + CAST(floor(u(i, 8) * 2700) AS INTEGER),   -- a few after as_of
    DATE '2017-03-01'
FROM gen_members;
"""

# monthly plans; month j = 13 lands after as_of (must be ignored)
_TRANSACTIONS = """
INSERT INTO raw.transactions
WITH t AS (
    SELECT m.msno, m.i * 16 + j AS r,
           DATE '2016-03-01' + CAST(30 * j AS INTEGER) + CAST(floor(u(m.i * 16 + j, 1) * 5) AS INTEGER) AS d
    FROM gen_members m, range(14) s(j)
    WHERE j >= m.first_month AND u(m.i * 16 + j, 2) < 0.9
)
SELECT
    msno,
    CASE WHEN u(r, 3) < 0.55 THEN 41 ELSE [40, 36, 39, 38, 32, 35][CAST(1 + floor(u(r, 4) * 6) AS INTEGER)] END,
    CASE WHEN u(r, 5) < 0.9 THEN 30 ELSE 7 END,
    [99, 129, 149, 0][CAST(1 + floor(u(r, 6) * 4) AS INTEGER)],
    CASE WHEN u(r, 7) < 0.92 THEN [99, 129, 149, 0][CAST(1 + floor(u(r, 6) * 4) AS INTEGER)] ELSE 0 END,
    CAST(u(r, 8) < 0.85 AS INTEGER),
    d,
    d + 30 - CASE WHEN u(r, 9) < 0.04 THEN 32 ELSE 0 END,
    CAST(u(r, 9) < 0.04 AS INTEGER),
    date_trunc('month', d)
FROM t;
"""

_USER_LOGS = """
INSERT INTO raw.user_logs
SELECT
    m.msno,
    $start + CAST(d AS INTEGER) AS date,
    CAST(floor(u(m.i * 128 + d, 1) * 8) AS INTEGER),
    CAST(floor(u(m.i * 128 + d, 2) * 4) AS INTEGER),
    CAST(floor(u(m.i * 128 + d, 3) * 3) AS INTEGER),
    CAST(floor(u(m.i * 128 + d, 4) * 3) AS INTEGER),
    CAST(floor(u(m.i * 128 + d, 5) * 40) AS INTEGER),
    CAST(floor(u(m.i * 128 + d, 6) * 45) AS INTEGER),
    CASE WHEN u(m.i * 128 + d, 7) < 0.001 THEN -9.223372036854776e15
         ELSE u(m.i * 128 + d, 8) * 9000 END,
    date_trunc('month', $start + CAST(d AS INTEGER))
FROM gen_members m, range($days) s(d)
WHERE u(m.i * 128 + d, 0) < m.engagement;
"""


def make_bench_db(path: Path, n_members: int) -> dict[str, int]:
    """Write raw.members / raw.transactions / raw.user_logs for `n_members` to `path`;
    logs are inserted month by month, as monthly ingestion would. Returns row counts."""
    start = AS_OF - dt.timedelta(days=LOG_DAYS)
    with duckdb.connect(str(path)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(_RAW_SCHEMA_SQL.read_text())
        con.execute(_MACROS)
        con.execute(_GEN_MEMBERS, {"n": n_members})
        con.execute(_MEMBERS)
        con.execute(_TRANSACTIONS)
        day = start
        while day < AS_OF:  # one insert per calendar month of the window
            nxt = min(AS_OF, (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1))
            con.execute(_USER_LOGS, {"start": day, "days": (nxt - day).days})
            day = nxt
        con.execute("DROP TABLE gen_members")
        return {
            t: con.execute(f"SELECT count(*) FROM raw.{t}").fetchone()[0]
            for t in ("members", "transactions", "user_logs")
        }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run_duckdb(db: str) -> dict:
    from churn_assets.features.member_features import build_member_features

    with duckdb.connect(db, read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        t0, c0 = time.perf_counter(), time.process_time()
        df = build_member_features(con, AS_OF)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": len(df), "seconds": seconds, "cpu": cpu, "load_seconds": 0.0, "rss_mb": _peak_rss_mb()}


def _run_pandas(db: str) -> dict:
    from benchmarks.pandas_features import build_member_features_pandas

    t0 = time.perf_counter()
    with duckdb.connect(db, read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        members = con.sql("SELECT * FROM raw.members").df()
        transactions = con.sql("SELECT * FROM raw.transactions").df()
        user_logs = con.sql("SELECT * FROM raw.user_logs").df()
    load = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    df = build_member_features_pandas(members, transactions, user_logs, AS_OF)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": len(df), "seconds": seconds, "cpu": cpu, "load_seconds": load, "rss_mb": _peak_rss_mb()}


def _measure(engine: str, db: Path) -> dict:
    """Run one engine in a fresh interpreter; its JSON result is the last stdout line."""
    return run_worker("benchmarks.bench_features", "--run", engine, db)


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    pandas_scale = float(os.environ.get("BENCH_PANDAS_SCALE", min(scale, 0.1)))
    scales = sorted({scale, pandas_scale}, reverse=True)
    print(f"member features as of {AS_OF}, {LOG_DAYS} days of logs, "
          f"{os.cpu_count()} cores, duckdb {duckdb.__version__}")
    header = (f"{'members':>9} {'log rows':>11} {'engine':>7} {'out rows':>9} {'load s':>7} "
              f"{'feat s':>8} {'cpu s':>7} {'peak RSS MB':>12} {'ratio wall':>11} {'ratio cpu':>10}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        for s in scales:
            db = Path(tmp) / f"bench_{s}.duckdb"
            t0 = time.perf_counter()
            counts = make_bench_db(db, max(1, round(s * 1_000_000)))
            print(f"generated scale {s}: {counts} in {time.perf_counter() - t0:.1f} s", flush=True)
            duck = _measure("duckdb", db)
            rows.append((counts, "duckdb", duck, "", ""))
            if s == pandas_scale:
                pan = _measure("pandas", db)
                rows.append((counts, "pandas", pan, f"{pan['seconds'] / duck['seconds']:.1f}x",
                             f"{pan['cpu'] / duck['cpu']:.1f}x"))
            db.unlink()
    print(header)
    for counts, engine, r, ratio, cpu_ratio in rows:
        print(f"{counts['members']:>9} {counts['user_logs']:>11} {engine:>7} {r['rows']:>9} "
              f"{r['load_seconds']:>7.1f} {r['seconds']:>8.2f} {r['cpu']:>7.1f} {r['rss_mb']:>12.0f} {ratio:>11} {cpu_ratio:>10}")
    print("feat s = wall time of the feature computation only (pandas: load s = reading the three "
          "tables with .df(), apart); cpu s = CPU time of all threads of that process during it; "
          f"ratios = pandas / duckdb on the same data. Load average at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on the machine inflates wall times).")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--run":
        runner = {"duckdb": _run_duckdb, "pandas": _run_pandas}[sys.argv[2]]
        print(json.dumps(runner(sys.argv[3])))
    else:
        main()
