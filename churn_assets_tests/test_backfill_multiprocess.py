"""Partition-parallel ingestion, for real: `dagster job backfill` of three monthly partitions
of ingest_job on a persistent instance (the project's dagster.yaml in a temporary
DAGSTER_HOME). The run launcher starts one process per partition; each run executes its
steps in child processes (multiprocess executor); the instance's `duckdb_warehouse` pool
lets one warehouse writer at a time through, so the runs overlap while the DuckDB writes
queue instead of failing on the file lock."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from churn_assets.defs.ingest.assets import ingest_job, raw_assets
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.settings import paths_from_env
from churn_assets_tests.conftest import deliver, repo_instance_config

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`

ROOT = Path(__file__).resolve().parents[1]
MONTHS = ["2016-07", "2016-08", "2016-09"]
PARTITIONS = [f"{m}-01" for m in MONTHS]
POOL = "duckdb_warehouse"
TIMEOUT_S = 180.0  # a hang guard: ~40 s on an idle two-core machine


# the listening logs: the biggest monthly table (392 M rows in the full public set). Every
# ingest step writes the warehouse, so the pool runs them one at a time across runs; one
# asset x three months keeps the test short on a busy two-core box
LOGS_JOB = dg.define_asset_job(
    "ingest_logs_job",
    selection=dg.AssetSelection.assets(["raw", "user_logs"]),
    partitions_def=ingest_job.partitions_def,
)
STEPS = {"raw_user_logs"}


@dg.definitions
def backfill_definitions() -> dg.Definitions:
    """The project's raw assets untouched; only the executor is chosen here, as a deployment
    would: multiprocess with a forkserver, so each step process forks from a warm
    interpreter instead of importing the code location again (~4 s per step)."""
    return dg.Definitions(
        assets=raw_assets,
        jobs=[ingest_job, LOGS_JOB],
        # a short lock wait: were the pool not serialising the writers, a step would fail
        resources={"storage": Storage(data_dir=str(paths_from_env().data_dir)), "warehouse": Warehouse(database=str(paths_from_env().duckdb_path), lock_timeout_seconds=5.0)},
        executor=dg.multiprocess_executor.configured({"max_concurrent": 4, "start_method": {"forkserver": {}}}),
    )


def _instance_yaml(home: Path) -> None:
    """The root dagster.yaml (storage, the op pools) with runs launched at once, no daemon:
    the run limits of `concurrency.runs` belong to the daemon's queue and are dropped."""
    config = repo_instance_config(home / "storage")
    pools = config.pop("concurrency")["pools"]
    assert pools == {"granularity": "op", "default_limit": 1}
    config["concurrency"] = {"pools": pools}
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def _stop_group(pid: int) -> None:
    """Whatever is left of the CLI's session (normally nothing): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def _events(instance: dg.DagsterInstance, run_id: str) -> list:
    return [e for e in instance.all_logs(run_id) if e.dagster_event is not None]


def _by_step(events: list, kind: dg.DagsterEventType) -> dict:
    return {e.dagster_event.step_key: e for e in events if e.dagster_event.event_type == kind}


def _overlaps(intervals: list[tuple[float, float]]) -> bool:
    ordered = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(ordered, ordered[1:]))


@pytest.fixture
def backfill(tiny_world, tmp_path, monkeypatch):
    data, home = tmp_path / "data", tmp_path / "home"
    (data / "landing").mkdir(parents=True)
    home.mkdir()
    deliver(tiny_world, data, *MONTHS)
    _instance_yaml(home)
    bin_dir = Path(sys.executable).parent
    for name, value in {
        "DAGSTER_HOME": home, "CHURN_DATA_DIR": data, "GX_ANALYTICS_ENABLED": "false",
        "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("CHURN_DUCKDB_PATH", raising=False)
    command = [
        str(bin_dir / "dagster"), "job", "backfill", "-m", __name__, "-a", "backfill_definitions",
        "-j", LOGS_JOB.name, "--partitions", ",".join(PARTITIONS), "--noprompt",
    ]
    started = time.time()
    log = tmp_path / "backfill.log"
    with log.open("wb") as out:  # a file, not a pipe: the code server inherits it and lives on
        # own session: the CLI, its code server and the run processes form one group to stop
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=TIMEOUT_S)
        output = log.read_text()
        assert proc.returncode == 0, output
        with dg.DagsterInstance.from_config(str(home)) as instance:
            [bf] = instance.get_backfills()
            runs_filter = dg.RunsFilter(tags={"dagster/backfill": bf.backfill_id})
            while True:  # the CLI returns once the runs are launched; they go on in the code server
                runs = instance.get_runs(filters=runs_filter)
                if len(runs) == len(PARTITIONS) and all(r.is_finished for r in runs):
                    break
                assert time.time() - started < TIMEOUT_S, f"runs not finished: {[r.status for r in runs]}\n{output}"
                time.sleep(0.5)
            yield {"instance": instance, "backfill": bf, "runs": runs, "db": data / "warehouse" / "churn.duckdb"}
    finally:
        _stop_group(proc.pid)


def test_backfill_runs_partitions_in_parallel_processes_with_serialised_warehouse_writes(backfill):
    instance, runs = backfill["instance"], backfill["runs"]
    assert sorted(backfill["backfill"].partition_names) == PARTITIONS
    assert sorted(r.tags["dagster/partition"] for r in runs) == PARTITIONS
    failures = {
        r.tags["dagster/partition"]: [e.message for e in _events(instance, r.run_id) if e.dagster_event.is_failure]
        for r in runs if r.status != dg.DagsterRunStatus.SUCCESS
    }
    assert not failures, failures  # no lock error, no failed step

    run_spans, write_spans, run_pids, step_pids = [], [], set(), []
    blocked = 0
    for run in runs:
        events = _events(instance, run.run_id)
        kinds = {e.dagster_event.event_type: e for e in events if e.dagster_event.step_key is None}
        run_start, run_success = kinds[dg.DagsterEventType.RUN_START], kinds[dg.DagsterEventType.RUN_SUCCESS]
        run_spans.append((run_start.timestamp, run_success.timestamp))
        run_pids.add(run_start.dagster_event.pid)
        assert any("multiprocess executor" in (e.message or "") for e in events)
        starts = _by_step(events, dg.DagsterEventType.STEP_START)
        ends = _by_step(events, dg.DagsterEventType.STEP_SUCCESS)
        assert set(starts) == set(ends) == STEPS
        for key, start in starts.items():
            step_pids.append(start.dagster_event.pid)
            write_spans.append((start.timestamp, ends[key].timestamp))
        blocked += sum(f"blocked by limit for pool {POOL}" in (e.message or "") for e in events)

    # one run worker per partition, each step in its own child process
    assert len(run_pids) == len(PARTITIONS) and os.getpid() not in run_pids
    assert len(set(step_pids)) == len(step_pids) == len(STEPS) * len(PARTITIONS) and not set(step_pids) & run_pids
    # the partitions were in flight together, yet no two warehouse writers ever overlapped
    assert _overlaps(run_spans)
    assert not _overlaps(write_spans)
    assert blocked > 0  # steps of concurrent runs did queue on the pool

    with duckdb.connect(str(backfill["db"]), read_only=True) as con:
        loaded = con.execute(
            "SELECT partition_month::VARCHAR, count(*) FROM raw.user_logs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [m for m, _ in loaded] == PARTITIONS and all(n > 0 for _, n in loaded)

