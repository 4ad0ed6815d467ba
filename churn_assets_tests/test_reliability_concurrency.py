"""Issue 8 item 4: concurrent writers are serialised, the retrain sensor requests each
event once across a daemon restart, and racing promotions never crown a failed version."""
from __future__ import annotations

import datetime as dt
import pytest
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.sensor import execute_sensor_iteration

from churn_assets_tests.conftest import deliver

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------- two writers at once

CHILD_INGEST = textwrap.dedent("""
    import pathlib, sys, dagster as dg
    from churn_assets.defs.ingest.assets import raw_assets
    from churn_assets.settings import paths_from_env
    from churn_assets.defs.resources import Storage, Warehouse
    db, month, ready = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    with dg.instance_for_test() as instance:
        ready.touch()  # imports done: from here on the only wait is the lock
        result = dg.materialize(raw_assets, partition_key=month, instance=instance,
                                resources={"storage": Storage(data_dir=str(paths_from_env().data_dir)), "warehouse": Warehouse(database=db, lock_timeout_seconds=120)},
                                raise_on_error=False)
    sys.exit(0 if result.success else 1)
""")


def test_two_ingest_runs_at_once_are_serialised_not_failed(tiny_world, data_dir):
    months = ["2016-08", "2016-09"]
    deliver(tiny_world, data_dir, *months)
    db = data_dir / "warehouse" / "churn.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    holder = duckdb.connect(str(db))  # a third writer holds the lock while both runs start
    procs = []
    for month in months:
        ready = data_dir / f"ready-{month}"
        procs.append((subprocess.Popen([sys.executable, "-c", CHILD_INGEST, str(db), f"{month}-01", str(ready)],
                                       cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE), ready))
    deadline = time.monotonic() + 120
    while not all(r.exists() for _, r in procs) and time.monotonic() < deadline:
        assert all(p.poll() is None for p, _ in procs), "a run exited before reaching the warehouse"
        time.sleep(0.05)
    time.sleep(1.5)  # both runs are now waiting for the lock
    assert all(p.poll() is None for p, _ in procs)
    holder.close()
    for proc, _ in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        per_month = dict(con.execute(
            "SELECT strftime(partition_month, '%Y-%m'), count(*) FROM raw.transactions GROUP BY 1").fetchall())
        logs = dict(con.execute(
            "SELECT strftime(partition_month, '%Y-%m'), count(*) FROM raw.user_logs GROUP BY 1").fetchall())
    for month in months:
        lines = sum(1 for _ in open(data_dir / "landing" / month / "transactions_logs.csv")) - 1
        assert per_month[month] == lines  # every row of both drops, none lost in the contention
        assert logs[month] > 0


# --------------------------------------------------------------- sensor across a daemon restart

SENSOR_DEFS = textwrap.dedent('''
    import dagster as dg
    from churn_assets.defs.monitoring.sensors import build_drift_retrain_sensor

    @dg.asset(key=["ml", "stub_model"])
    def stub_model() -> None:
        return None

    train_job = dg.define_asset_job("train_job", selection=[stub_model])
    retune_job = dg.define_asset_job("retune_job", selection=[stub_model])
    defs = dg.Definitions(assets=[stub_model], jobs=[train_job, retune_job],
                          sensors=[build_drift_retrain_sensor([train_job, retune_job])])
''')


def _report(instance, week: str, decision: str) -> None:
    """A drift decision whose week brought a new final labelled month (the sensor asks for
    a run only then): one data window per week, newer than what production learned."""
    from churn_assets.defs.keys import DRIFT_REPORT as DRIFT_REPORT_KEY

    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=DRIFT_REPORT_KEY, partition=week,
        metadata={"decision": dg.MetadataValue.text(decision), "drift_share": dg.MetadataValue.float(0.07),
                  "trainable_through": dg.MetadataValue.text(f"{week}-window"),
                  "model_trained_through": dg.MetadataValue.text("2016-12-01")}))


def _daemon_tick(instance, target) -> None:
    """One sensor-daemon iteration with a fresh workspace (as after a restart)."""
    with create_test_daemon_workspace_context(target, instance) as workspace:
        list(execute_sensor_iteration(workspace, logging.getLogger("sensor-daemon-test"), None, None))


def _requested(instance) -> list[tuple[str, str]]:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: "drift_retrain_sensor"}))
    return sorted((r.tags["churn/week"], r.tags[RUN_KEY_TAG]) for r in runs)


def test_retrain_sensor_requests_each_event_once_across_daemon_restarts(tmp_path):
    defs_file = tmp_path / "sensor_defs.py"
    defs_file.write_text(SENSOR_DEFS)
    target = PythonFileTarget(python_file=str(defs_file), attribute="defs",
                              working_directory=str(ROOT), location_name="reliability")
    home = tmp_path / "dagster_home"
    home.mkdir()
    home = str(home)
    weeks = [(dt.date(2017, 4, 3) + dt.timedelta(weeks=i)).isoformat() for i in range(8)]
    now = time.time()
    with dg.instance_for_test(temp_dir=home) as instance:
        for week in weeks:  # an 8-week backfill lands at once
            _report(instance, week, "none" if week == weeks[3] else "retrain")
        with freeze_time(now):
            _daemon_tick(instance, target)
        first = _requested(instance)
    assert [w for w, _ in first] == [w for w in weeks if w != weeks[3]]
    assert len({k for _, k in first}) == 7

    # the daemon restarts: a new instance object on the same storage, a new workspace
    with dg.instance_for_test(temp_dir=home) as instance:
        with freeze_time(now + 120):  # past minimum_interval_seconds
            _daemon_tick(instance, target)
        assert _requested(instance) == first  # nothing re-requested
        _report(instance, "2017-05-29", "retrain")  # one new event after the restart
        _report(instance, weeks[0], "retune")  # a re-materialised week is a new event (a retune of its window)
        with freeze_time(now + 240):
            _daemon_tick(instance, target)
        after = _requested(instance)
        ticks = instance.get_ticks(
            next(iter(instance.all_instigator_state())).instigator_origin_id,
            next(iter(instance.all_instigator_state())).selector_id)
    new = sorted(set(after) - set(first))
    assert [w for w, _ in new] == sorted(["2017-05-29", weeks[0]])
    assert len(after) == len({k for _, k in after}) == 9
    assert len(ticks) == 3


# --------------------------------------------------------------- racing promotions

def test_racing_promotions_never_point_production_at_a_failed_version(tmp_path):
    from mlflow.tracking import MlflowClient

    from churn_assets.model.names import FAILED, MODEL_NAME, PASSED, PRODUCTION, TAG_AUTOMATED
    from churn_assets.model.promotion import promote
    from churn_assets_tests.test_model_support import fresh_mlflow_store

    uri, _ = fresh_mlflow_store(tmp_path / "mlflow")
    client = MlflowClient(uri)
    client.create_registered_model(MODEL_NAME)
    source = tmp_path / "artifact"
    source.mkdir()
    good, bad = (client.create_model_version(MODEL_NAME, source=source.as_uri()).version for _ in range(2))
    client.set_model_version_tag(MODEL_NAME, good, TAG_AUTOMATED, PASSED)
    client.set_model_version_tag(MODEL_NAME, bad, TAG_AUTOMATED, FAILED)

    seen, outcomes, stop = set(), {good: [], bad: []}, threading.Event()
    barrier = threading.Barrier(2)

    def racer(version: str) -> None:
        own = MlflowClient(uri)
        for _ in range(15):
            barrier.wait()
            outcomes[version].append(promote(own, version))

    def watcher() -> None:
        own = MlflowClient(uri)
        while not stop.is_set():
            try:
                seen.add(str(own.get_model_version_by_alias(MODEL_NAME, PRODUCTION).version))
            except Exception:  # noqa: BLE001 - no alias yet
                pass

    threads = [threading.Thread(target=racer, args=(v,)) for v in (good, bad)]
    watch = threading.Thread(target=watcher)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    watch.join()
    assert outcomes[good] == [True] * 15 and outcomes[bad] == [False] * 15
    assert str(client.get_model_version_by_alias(MODEL_NAME, PRODUCTION).version) == str(good)
    assert seen == {str(good)}
