"""Issue 8 item 3: a process killed (SIGKILL) in the middle of writing a partition
leaves the previous table contents exactly, and re-running completes.

The child process announces "inside the write" with a marker file written just
before the big INSERT of the transaction (and "committed" after it returns); the
parent kills it a moment after the first marker and retries with a shorter delay
if it was too slow. DuckDB's WAL replay on reopen drops the uncommitted transaction.
"""
from __future__ import annotations

import os
import pytest
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from churn_assets.defs.ingest.assets import raw_assets
from churn_assets.settings import paths_from_env
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.sql import replace_partition
from churn_assets_tests.conftest import deliver
from churn_assets_tests.test_reliability_support import table_digest

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`

ROOT = Path(__file__).resolve().parents[1]

CHILD_REPLACE = textwrap.dedent("""
    import sys, pathlib, duckdb, numpy as np, pandas as pd
    from churn_assets.sql import replace_partition
    db, inside, done, n = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4])

    class Announcing:  # a connection that says when the transaction's INSERT starts
        def __init__(self, con): self.con = con
        def __getattr__(self, name): return getattr(self.con, name)
        def execute(self, sql, *args):
            if sql.lstrip().startswith("INSERT"):
                inside.touch()
            return self.con.execute(sql, *args)

    frame = pd.DataFrame({"part": np.int64(2), "k": np.arange(n, dtype=np.int64),
                          "v": np.random.default_rng(1).random(n)})
    con = duckdb.connect(db)
    replace_partition(Announcing(con), "crash.big", frame, "part", 2)
    done.touch()
""")

CHILD_INGEST = textwrap.dedent("""
    import pathlib, sys, dagster as dg
    import churn_assets.ingest.loading as loading
    from churn_assets.defs.ingest.assets import raw_assets
    from churn_assets.defs.resources import Storage, Warehouse
    from churn_assets.settings import paths_from_env
    db, inside, done = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    original = loading._replace_partition

    def announcing(*args, **kwargs):
        inside.touch()  # staging done: the DELETE + INSERT transaction starts now
        out = original(*args, **kwargs)
        done.touch()  # committed
        return out

    loading._replace_partition = announcing
    [user_logs] = [a for a in raw_assets if a.key == dg.AssetKey(["raw", "user_logs"])]
    with dg.instance_for_test() as instance:
        result = dg.materialize([user_logs], partition_key="2016-09-01", instance=instance,
                                resources={"storage": Storage(data_dir=str(paths_from_env().data_dir)), "warehouse": Warehouse(database=db)})
    assert result.success
""")


def kill_inside_write(script: str, args: list[str], workdir: Path, db: Path, before, state, complete,
                      timeout: float = 120.0) -> float:
    """Run `script` and SIGKILL it a moment after it announced the write, until a kill
    lands before the commit. After every kill the table must be exactly `before` (killed
    mid-write) or `complete` (the commit won the race; the file is restored and we retry
    sooner): never anything in between. Returns the delay that caught the write."""
    snapshot = workdir / "snapshot.duckdb"
    shutil.copy(db, snapshot)  # the committed state (checkpointed: the writer closed cleanly)
    for delay in (0.25, 0.1, 0.03, 0.0, 0.0, 0.0):
        inside, done = workdir / "inside", workdir / "done"
        inside.unlink(missing_ok=True)
        done.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", script, *args, str(inside), str(done)],
                                cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not inside.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert inside.exists(), f"child never reached the write: {proc.communicate()[1].decode()[-2000:]}"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        now = state()  # reopening replays the WAL without an uncommitted transaction
        if now == before:
            assert not done.exists()
            return delay
        assert complete(now), f"a killed write left a partial table: {now}"
        shutil.copy(snapshot, db)
        Path(f"{db}.wal").unlink(missing_ok=True)
    raise AssertionError("the write always committed before the kill: make it bigger")


def test_kill_during_replace_partition_keeps_previous_contents(tmp_path):
    db = str(tmp_path / "w.duckdb")
    with duckdb.connect(db) as con:
        for part in (1, 2):
            old = pd.DataFrame({"part": np.int64(part), "k": np.arange(50_000, dtype=np.int64),
                                "v": np.full(50_000, float(part))})
            replace_partition(con, "crash.big", old, "part", part)
        before = table_digest(con, "crash.big")

    n = 4_000_000
    script = CHILD_REPLACE.replace("int(sys.argv[4])", str(n))
    def state():
        with duckdb.connect(db) as con:
            return table_digest(con, "crash.big")

    kill_inside_write(script, [db], tmp_path, Path(db), before, state,
                      complete=lambda digest: digest[0] == 50_000 + n)

    with duckdb.connect(db) as con:
        assert table_digest(con, "crash.big") == before
        frame = pd.DataFrame({"part": np.int64(2), "k": np.arange(1000, dtype=np.int64), "v": 0.5})
        assert replace_partition(con, "crash.big", frame, "part", 2) == 1000  # a re-run completes
        assert con.execute("SELECT part, count(*), sum(v) FROM crash.big GROUP BY part ORDER BY part").fetchall() == [
            (1, 50_000, 50_000.0), (2, 1000, 500.0)]


def _big_user_logs(src: Path, dst: Path, copies: int) -> int:
    """The month's userlogs repeated with distinct msno suffixes: a big, valid drop."""
    logs = pd.read_csv(src, dtype=str, keep_default_na=False)
    big = pd.concat([logs.assign(msno=logs["msno"] + f"_{i}") for i in range(copies)], ignore_index=True)
    big.to_csv(dst, index=False)
    return len(big)


def test_kill_during_raw_ingest_keeps_previous_partition_and_rerun_completes(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, "2016-09")
    db = str(data_dir / "warehouse" / "churn.duckdb")
    [user_logs] = [a for a in raw_assets if a.key == dg.AssetKey(["raw", "user_logs"])]

    def materialize():
        return dg.materialize([user_logs], partition_key="2016-09-01", instance=instance,
                              resources={"storage": Storage(data_dir=str(paths_from_env().data_dir)), "warehouse": Warehouse(database=db)})

    assert materialize().success  # the previous, committed contents
    with duckdb.connect(db) as con:
        before = {t: table_digest(con, t) for t in ("raw.user_logs", "raw.quarantine")}
        rows_before = con.execute("SELECT count(*) FROM raw.user_logs").fetchone()[0]

    path = data_dir / "landing" / "2016-09" / "userlogs.csv"
    n = _big_user_logs(path, path, copies=12)  # a re-delivered, much bigger drop
    def state():
        with duckdb.connect(db) as con:
            return {t: table_digest(con, t) for t in before}

    kill_inside_write(CHILD_INGEST, [db], data_dir, Path(db), before, state,
                      complete=lambda digests: digests["raw.user_logs"][0] + digests["raw.quarantine"][0] == n)

    with duckdb.connect(db) as con:
        assert {t: table_digest(con, t) for t in before} == before
        # nothing of the killed run's staging survives either
        assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_stage_%'").fetchone()[0]

    assert materialize().success  # re-running completes
    with duckdb.connect(db) as con:
        rows, quarantined = con.execute(
            "SELECT (SELECT count(*) FROM raw.user_logs), (SELECT count(*) FROM raw.quarantine)").fetchone()
    assert rows + quarantined == n and rows > rows_before
