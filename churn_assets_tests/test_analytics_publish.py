"""Analyst access: partitions published as Parquet (atomic rename), a views
file anyone can open, and an analyst session in another process that never
makes the pipeline fail or wait."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from churn_assets.analytics import publish as pub
from churn_assets.analytics.publish import (
    PUBLISHED_TABLES,
    current_files,
    partition_name,
    publish,
    publish_partition,
    publish_table,
    refresh_analytics_views,
)
from churn_assets.defs.resources import Warehouse, WarehouseLockedError
from churn_assets.settings import Paths

WEEKS = [date(2017, 1, 2), date(2017, 1, 9)]


def _write_scores(con, week: date, rows: int, version: int) -> None:
    """A churn_scores-shaped partition whose rows identify their version."""
    con.execute("CREATE SCHEMA IF NOT EXISTS scoring")
    con.execute("""CREATE TABLE IF NOT EXISTS scoring.churn_scores (
        week_start DATE, msno VARCHAR, churn_probability DOUBLE, bucket VARCHAR, model_version VARCHAR)""")
    con.execute("BEGIN")
    con.execute("DELETE FROM scoring.churn_scores WHERE week_start = ?", [week])
    con.execute(
        """INSERT INTO scoring.churn_scores
           SELECT $week, 'm' || i, (i % 100) / 100.0, CASE WHEN i % 100 >= 70 THEN 'A' WHEN i % 100 >= 30 THEN 'B' ELSE 'C' END,
                  $version::VARCHAR
           FROM range($rows) t(i)""",
        {"week": week, "rows": rows, "version": version},
    )
    con.execute("COMMIT")


def _signature(week: date, rows: int, version: int) -> tuple:
    """(week, rows, version) as the reader reports it."""
    return (week.isoformat(), rows, str(version))


def _scores_files(analytics: Path) -> list[str]:
    return sorted(p.name for p in (analytics / "scoring" / "churn_scores").iterdir())


def test_publish_layout_views_and_empty_partition(tmp_path):
    analytics, db = tmp_path / "analytics", tmp_path / "analytics.duckdb"
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        for week in WEEKS:
            _write_scores(con, week, 1_000, 1)
        con.execute("CREATE SCHEMA kpi")
        con.execute("CREATE TABLE kpi.monthly_churn AS SELECT DATE '2017-01-01' AS month, 0.07::DOUBLE AS churn_rate")
        paths = [publish_partition(con, "scoring.churn_scores", "week_start", w, analytics) for w in WEEKS]
        whole = publish_partition(con, "kpi.monthly_churn", None, None, analytics)
        expected = con.execute("SELECT week_start, bucket, count(*) FROM scoring.churn_scores GROUP BY ALL ORDER BY ALL").fetchall()

    assert paths[0].parent == analytics / "scoring" / "churn_scores"
    assert paths[0].name.startswith("week_start=2017-01-02__") and paths[0].suffix == ".parquet"
    assert whole.parent == analytics / "kpi" / "monthly_churn" and whole.name.startswith("all__")
    assert all(p.is_file() for p in [*paths, whole])
    assert not list(analytics.rglob("*.tmp"))
    assert current_files(paths[0].parent) == paths

    assert refresh_analytics_views(analytics, db) == ["kpi.monthly_churn", "scoring.churn_scores"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".wal"))]
    with duckdb.connect(str(db), read_only=True) as con:
        got = con.execute("SELECT week_start, bucket, count(*) FROM scoring.churn_scores GROUP BY ALL ORDER BY ALL").fetchall()
        assert got == expected
        assert con.execute("SELECT churn_rate FROM kpi.monthly_churn").fetchall() == [(0.07,)]

    # The partition emptied in the warehouse: a tombstone ends it, the view follows.
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        con.execute("DELETE FROM scoring.churn_scores WHERE week_start = ?", [WEEKS[0]])
        tomb = publish_partition(con, "scoring.churn_scores", "week_start", WEEKS[0], analytics)
    assert tomb.suffix == ".empty" and current_files(tomb.parent) == [paths[1]]
    refresh_analytics_views(analytics, db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT DISTINCT week_start FROM scoring.churn_scores").fetchall() == [(WEEKS[1],)]


def test_a_new_column_in_a_later_partition_is_unioned_by_name(tmp_path):
    analytics, db = tmp_path / "analytics", tmp_path / "analytics.duckdb"
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA monitoring")
        con.execute("CREATE TABLE monitoring.drift_reports AS SELECT DATE '2017-01-02' AS week_start, 0.02::DOUBLE AS drift_share")
        publish_partition(con, "monitoring.drift_reports", "week_start", WEEKS[0], analytics)
        con.execute("ALTER TABLE monitoring.drift_reports ADD COLUMN decision VARCHAR")
        con.execute("INSERT INTO monitoring.drift_reports VALUES (DATE '2017-01-09', 0.12, 'retune')")
        publish_partition(con, "monitoring.drift_reports", "week_start", WEEKS[1], analytics)
    refresh_analytics_views(analytics, db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT week_start, drift_share, decision FROM monitoring.drift_reports ORDER BY 1").fetchall()
    assert rows == [(WEEKS[0], 0.02, None), (WEEKS[1], 0.12, "retune")]


def test_superseded_versions_are_kept_for_open_sessions_then_deleted(tmp_path):
    analytics = tmp_path / "analytics"
    with duckdb.connect() as con:
        _write_scores(con, WEEKS[0], 10, 1)
        first = publish_partition(con, "scoring.churn_scores", "week_start", WEEKS[0], analytics)
        second = publish_partition(con, "scoring.churn_scores", "week_start", WEEKS[0], analytics)
        assert first.exists() and current_files(first.parent) == [second]  # kept: a session may still read it
        third = publish_partition(con, "scoring.churn_scores", "week_start", WEEKS[0], analytics, keep_seconds=0)
    assert _scores_files(analytics) == [third.name]


def test_publish_table_republishes_every_partition_and_ends_stale_ones(tmp_path):
    analytics = tmp_path / "analytics"
    with duckdb.connect() as con:
        for week in [date(2016, 12, 26), *WEEKS]:
            _write_scores(con, week, 10, 1)
        publish_table(con, "scoring.churn_scores", "week_start", analytics)
        con.execute("DELETE FROM scoring.churn_scores WHERE week_start = DATE '2016-12-26'")
        current = publish_table(con, "scoring.churn_scores", "week_start", analytics)
    assert [p.name.split("__")[0] for p in current] == [f"week_start={w}" for w in WEEKS]


def test_publish_helper_uses_the_contract_locations(tmp_path):
    paths = Paths(tmp_path / "data")
    with duckdb.connect() as con:
        _write_scores(con, WEEKS[0], 10, 1)
        [path] = publish(con, {"scoring.churn_scores": WEEKS[0]}, paths=paths)
    assert path.parent == paths.analytics / "scoring" / "churn_scores"
    with duckdb.connect(str(paths.data_dir / "analytics.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scoring.churn_scores").fetchone() == (10,)
    assert set(PUBLISHED_TABLES) == {"scoring.churn_scores", "monitoring.drift_reports", "monitoring.drift_columns",
                                     "monitoring.model_performance", "kpi.monthly_churn", "features.labels",
                                     "marketing.treatments", "marketing.retention_effect",
                                     "monitoring.serving_drift"}


def test_bad_names_never_reach_a_file_name_or_sql(tmp_path):
    with pytest.raises(ValueError):
        partition_name("week_start", "../../etc")
    with pytest.raises(ValueError):
        partition_name("week_start; DROP", WEEKS[0])
    with duckdb.connect() as con, pytest.raises(ValueError):
        publish_partition(con, "scoring.churn_scores; DROP", "week_start", WEEKS[0], tmp_path)


def test_a_failed_publish_leaves_the_current_file_in_place(tmp_path, monkeypatch):
    analytics = tmp_path / "analytics"
    with duckdb.connect() as con:
        _write_scores(con, WEEKS[0], 100, 1)
        current = publish_partition(con, "scoring.churn_scores", "week_start", WEEKS[0], analytics)
        renames = []

        def failing_replace(src, dst):
            renames.append((Path(src), Path(dst)))
            raise OSError("disk full")

        monkeypatch.setattr(pub.os, "replace", failing_replace)
        _write_scores(con, WEEKS[0], 200, 2)
        with pytest.raises(OSError):
            publish_partition(con, "scoring.churn_scores", "week_start", WEEKS[0], analytics)
    # The new version was complete under a temp name beside its target (same
    # filesystem: the rename is atomic); the failure left no litter.
    (src, dst), = renames
    assert src.parent == dst.parent == current.parent and src.name.endswith(".tmp")
    assert _scores_files(analytics) == [current.name] and current_files(current.parent) == [current]


READER = r"""
import duckdb, json, sys, time
from pathlib import Path
db, stop, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
QUERY = ("SELECT week_start::VARCHAR, count(*), min(model_version) || '-' || max(model_version) "
         "FROM scoring.churn_scores GROUP BY 1 ORDER BY 1")
held = None if mode == "reopen" else duckdb.connect(db, read_only=mode == "hold_read_only")
print(json.dumps({"ready": True}), flush=True)
while not stop.exists():
    con = held or duckdb.connect(db, read_only=True)  # "reopen": a new analyst session each time
    try:
        print(json.dumps({"rows": con.execute(QUERY).fetchall()}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
    if held is None:
        con.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("held_mode", ["hold_read_only", "hold_read_write"])
def test_open_analyst_sessions_never_block_or_fail_the_pipeline(tmp_path, held_mode):
    """Two analysts query in loops from other processes while the pipeline
    rewrites the warehouse and republishes: one keeps analytics.duckdb open all
    along (read-only, or read-write as the plain `duckdb FILE` CLI does), one
    opens it afresh for every query (alongside the read-only one). No write waits or fails; the long session
    keeps its consistent snapshot; the fresh sessions see whole versions only,
    then the last one."""
    warehouse, analytics, db = tmp_path / "wh.duckdb", tmp_path / "analytics", tmp_path / "analytics.duckdb"
    sizes = {1: 30_000, 2: 50_000, 3: 20_000, 4: 70_000, 5: 40_000, 6: 60_000}

    def write_and_publish(version: int) -> float:
        start = time.perf_counter()
        with duckdb.connect(str(warehouse)) as con:  # the pipeline's single writer
            for week in WEEKS:
                _write_scores(con, week, sizes[version], version)
                publish_partition(con, "scoring.churn_scores", "week_start", week, analytics)
        refresh_analytics_views(analytics, db)
        return time.perf_counter() - start

    write_and_publish(1)
    stop = tmp_path / "stop"
    readers = {mode: subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop), mode],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               # a read-write session locks its file against other sessions (not the pipeline):
               # the README tells analysts to use -readonly
               for mode in ((held_mode, "reopen") if held_mode == "hold_read_only" else (held_mode,))}
    outputs = {}
    try:
        for reader in readers.values():
            assert json.loads(reader.stdout.readline()) == {"ready": True}
        seconds = [write_and_publish(v) for v in range(2, 7)]
        time.sleep(0.5)
    finally:
        stop.touch()
        for mode, reader in readers.items():
            outputs[mode] = reader.communicate(timeout=30)
    assert max(seconds) < 5, seconds  # no lock wait (the warehouse lock timeout is 120 s)

    whole = {(w.isoformat(), n, f"{v}-{v}") for v, n in sizes.items() for w in WEEKS}
    seen = {}
    for mode, (out, err) in outputs.items():
        assert readers[mode].returncode == 0, err
        observations = [json.loads(line) for line in out.splitlines()]
        assert observations and not [o for o in observations if "error" in o], (mode, observations[-3:])
        seen[mode] = [{tuple(row) for row in o["rows"]} for o in observations]
        assert set().union(*seen[mode]) <= whole  # never a torn or mixed partition
    snapshot = {(w.isoformat(), sizes[1], "1-1") for w in WEEKS}
    assert all(rows == snapshot for rows in seen[held_mode])
    if "reopen" in seen:
        assert seen["reopen"][-1] == {(w.isoformat(), sizes[6], "6-6") for w in WEEKS}


HOLDER = r"""
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_a_held_warehouse_lock_ends_in_an_error_naming_the_file(tmp_path):
    warehouse = tmp_path / "warehouse" / "churn.duckdb"
    warehouse.parent.mkdir()
    duckdb.connect(str(warehouse)).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(WarehouseLockedError) as info:
            with Warehouse(database=str(warehouse), lock_timeout_seconds=1.0).get_connection():
                pass
        assert 0.9 < time.monotonic() - start < 10
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    message = str(info.value)
    assert str(warehouse) in message and "analytics.duckdb" in message
    with Warehouse(database=str(warehouse), lock_timeout_seconds=1.0).get_connection() as con:
        assert con.execute("SELECT 1").fetchone() == (1,)


def test_the_readme_analyst_queries_run_on_the_published_views(tmp_path):
    """Every ```sql block of deploy/README.md runs against contract-shaped
    published tables and returns rows."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "deploy" / "README.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", readme, flags=re.S)
    assert len(queries) >= 3
    paths = Paths(tmp_path / "data")
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA scoring; CREATE SCHEMA monitoring")
        con.execute("""CREATE TABLE scoring.churn_scores AS
            SELECT DATE '2017-01-02' + (7 * (i % 2))::INTEGER AS week_start, 'm' || i AS msno, DATE '2017-01-20' AS membership_expire_date,
                   18 AS days_to_expiry, (i % 10) / 10.0 AS churn_probability,
                   CASE WHEN i % 10 >= 7 THEN 'A' WHEN i % 10 >= 3 THEN 'B' ELSE 'C' END AS bucket,
                   'call' AS action, 0 AS discount_pct, 'r1' AS reason_1, 'r2' AS reason_2, 'r3' AS reason_3,
                   '1' AS model_version, now() AS scored_at
            FROM range(40) t(i)""")
        con.execute("""CREATE TABLE monitoring.drift_reports AS
            SELECT DATE '2017-01-02' AS week_start, '1' AS model_version, 1000 AS reference_rows, 900 AS current_rows,
                   30 AS n_columns, 2 AS n_drifted, 0.066 AS drift_share, 'retrain' AS decision, 'x.html' AS report_path""")
        con.execute("""CREATE TABLE monitoring.drift_columns AS
            SELECT DATE '2017-01-02' AS week_start, c AS column_name, 'psi' AS method, s AS score, s > 0.2 AS drifted
            FROM (VALUES ('plan_days', 0.3), ('bd', 0.1)) v(c, s)""")
        for week in WEEKS:
            publish(con, {"scoring.churn_scores": week}, paths=paths)
        publish(con, {"monitoring.drift_reports": WEEKS[0], "monitoring.drift_columns": WEEKS[0]}, paths=paths)
    with duckdb.connect(str(paths.data_dir / "analytics.duckdb"), read_only=True) as con:
        results = [con.execute(q).fetchall() for q in queries]
    assert all(results)
    top, buckets, drift = results[:3]
    assert len(top) == 20 and top[0][1] == 0.9
    assert [(str(r[0]), r[1] + r[2] + r[3]) for r in buckets] == [("2017-01-02", 20), ("2017-01-09", 20)]
    assert drift[0][-1] == "plan_days"
