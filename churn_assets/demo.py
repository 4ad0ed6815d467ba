"""`make demo`: replay a synthetic timeline through the asset graph on the
persistent instance, the way production would live through it.

Each month's drop folder is "delivered" into data/landing and the landing
sensor is ticked; its run request is executed. Labels and training features
follow. Once enough labelled months are final the first model is trained and
gated; from then on every Monday is scored, reported and checked for drift,
and the drift sensor is ticked, its requested retrain/retune runs executed.
Runs launched for a sensor carry the sensor's name and run key, so the daemon
started later by `make ui` sees them as already requested and never repeats them.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from churn_assets.features.labels import final_after
from churn_assets.months import add_months
from churn_assets.settings import Paths, paths_from_env

# Two more months of history than the 2016-07 start of the brief, so that training
# months have full 90-day feature windows and pre-shift weeks get scored too.
DEFAULT_WORLD = {"start": "2016-05", "months": 12, "scenarios": [("channel_shift", "2017-02")]}
TRAIN_MONTHS, MIN_HISTORY_MONTHS = 3, 3  # the model asset's TrainConfig defaults
# The demo's one departure from production config: Optuna gets 5 trials, not 20,
# so a sensor-requested retune fits the demo's time budget.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_RUN_CONFIG = {"retune_job": {"ops": {"ml__churn_model": {"config": {"mode": "retune", "n_trials": 5, "timeout_s": 120.0}}}}}


@dataclass
class DemoSummary:
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    runs: list[dict] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def render(self) -> str:
        lines = ["", "=== churn-assets demo summary ==="]
        failed = [r for r in self.runs if not r["success"]]
        lines.append(f"Dagster runs: {len(self.runs)} ({len(failed)} failed)"
                     + "".join(f"\n  FAILED {r['job']} {r['partition']}" for r in failed))
        for title, frame in self.tables.items():
            if frame is not None and len(frame):
                lines += ["", f"-- {title} --", frame.to_string(index=False)]
        lines += ["", "-- phases (seconds) --"]
        lines += [f"  {name:<28}{secs:8.1f}" for name, secs in self.phases.items()]
        lines += ["", "Browse it all with `make ui`; query scores: see README 'Querying the scores'."]
        return "\n".join(lines)


class Replay:
    """Runs jobs and sensor ticks in-process on one instance, recording results."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, summary: DemoSummary,
                 run_config: dict[str, dict] | None = None):
        self.defs, self.instance, self.summary = defs, instance, summary
        self.run_config = run_config or {}  # job name -> run config, for every run of that job
        self.cursors: dict[str, str | None] = {}

    def has_job(self, name: str) -> bool:
        return any(job.name == name for job in self.defs.jobs or [])

    def run(self, job_name: str, partition_key: str | None = None, tags: dict | None = None,
            run_config: dict | None = None) -> bool:
        job = self.defs.resolve_job_def(job_name)
        # the console shows warnings only; every event still goes to the instance (make ui)
        config = {**(run_config or self.run_config.get(job_name) or {}), **QUIET_CONSOLE}
        result = job.execute_in_process(instance=self.instance, partition_key=partition_key, tags=tags or {},
                                        run_config=config, raise_on_error=False)
        if not result.success:
            print(f"  run {job_name} {partition_key or ''} did not succeed (run {result.run_id[:8]}; see make ui)")
        self.summary.runs.append({"job": job_name, "partition": partition_key, "success": result.success,
                                  "run_id": result.run_id, "tags": dict(tags or {})})
        return result.success

    def tick(self, sensor_name: str) -> list[dg.RunRequest]:
        """Evaluate a sensor like the daemon would and execute its new run requests."""
        sensor = self.defs.resolve_sensor_def(sensor_name)
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor_name),
                                          definitions=self.defs, sensor_name=sensor_name)
        data = sensor.evaluate_tick(context)
        self.cursors[sensor_name] = data.cursor
        executed = []
        for request in data.run_requests or []:
            if request.run_key and self.instance.get_runs(
                filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: sensor_name})
            ):
                continue  # already requested once: the daemon would skip it too
            tags = {**request.tags, SENSOR_NAME_TAG: sensor_name}
            if request.run_key:
                tags[RUN_KEY_TAG] = request.run_key
            job_name = request.job_name or sensor.job_name
            self.run(job_name, request.partition_key, tags, request.run_config or None)
            executed.append(request)
        return executed


def mondays_in(month: date) -> list[date]:
    first = month + timedelta(days=(7 - month.weekday()) % 7)
    end = add_months(month, 1)
    return [first + timedelta(weeks=i) for i in range(6) if first + timedelta(weeks=i) < end]


def reset_state(paths: Paths) -> None:
    """A demo is a clean replay: forget the warehouse, MLflow, instance and reports."""
    for sub in ("landing", "warehouse", "mlflow", "dagster", "reports", "analytics"):
        shutil.rmtree(paths.data_dir / sub, ignore_errors=True)
    paths.duckdb_path.unlink(missing_ok=True)
    (paths.data_dir / "analytics.duckdb").unlink(missing_ok=True)


def ensure_world(paths: Paths, members: int, seed: int, world: dict) -> Path:
    """Generate the synthetic world under data/synthetic once per parameter set."""
    from churn_assets.synthetic.simulator import generate_world

    source = paths.data_dir / "synthetic"
    params = {"members": members, "seed": seed, **world}
    stamp = source / "world.json"
    if not (stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(params))):
        shutil.rmtree(source, ignore_errors=True)
        generate_world(source, members=members, start=world["start"], months=world["months"], seed=seed,
                       scenarios=world["scenarios"], progress=True)
        stamp.write_text(json.dumps(params))
    return source


def _trainable_months(paths: Paths) -> list[date]:
    from churn_assets.model.data import labelled_months

    with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
        return labelled_months(con, MIN_HISTORY_MONTHS)


def _query(paths: Paths, sql: str) -> pd.DataFrame | None:
    try:
        with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
            return con.execute(sql).df()
    except duckdb.Error:
        return None  # the table does not exist (yet): that stage has not run


def run_demo(members: int = 20_000, seed: int = 7, reset: bool = True, world: dict | None = None,
             instance: dg.DagsterInstance | None = None, run_config: dict[str, dict] | None = None) -> DemoSummary:
    """Replay a world; `run_config` (job name -> run config) replaces DEMO_RUN_CONFIG."""
    from churn_assets.definitions import build_definitions

    world = world or DEFAULT_WORLD
    paths = paths_from_env()
    summary = DemoSummary()
    started = time.perf_counter()
    if reset:
        reset_state(paths)
    source = ensure_world(paths, members, seed, world)
    summary.phases["generate world"] += time.perf_counter() - started

    if instance is None:
        if not os.environ.get("DAGSTER_HOME"):
            raise RuntimeError("DAGSTER_HOME is not set: run `make demo`, which points it at the repo root")
        instance = dg.DagsterInstance.get()
    replay = Replay(build_definitions(), instance, summary, DEMO_RUN_CONFIG if run_config is None else run_config)
    has_model = replay.has_job("train_job")
    has_scoring = replay.has_job("weekly_scoring_job")
    months = sorted(date.fromisoformat(p.name + "-01") for p in (source / "landing").iterdir() if p.is_dir())
    production = False

    for month in months:
        print(f"{month:%Y-%m}: drop delivered; {len(summary.runs)} runs so far, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        t = time.perf_counter()
        shutil.copytree(source / "landing" / f"{month:%Y-%m}", paths.landing / f"{month:%Y-%m}", dirs_exist_ok=True)
        replay.tick("landing_sensor")
        summary.phases["ingest"] += time.perf_counter() - t

        t = time.perf_counter()
        for target in (add_months(month, -1), month):  # M-1 becomes final; M gets its candidates
            if target > months[0]:  # the first month has no history window, so no candidates
                replay.run("features_job", target.isoformat())
        if replay.has_job("performance_job") and production:  # the months this drop made final
            for target in (m for m in months if final_after(m) == month):
                replay.run("performance_job", target.isoformat())
        summary.phases["labels, features, KPI"] += time.perf_counter() - t

        if has_model and not production and len(_trainable_months(paths)) >= TRAIN_MONTHS + 1:
            t = time.perf_counter()
            production = replay.run("train_job", tags={"churn/trigger": "demo: first model"})
            summary.phases["first training"] += time.perf_counter() - t

        if has_scoring and production:
            for week in mondays_in(month):
                t = time.perf_counter()
                replay.run("weekly_scoring_job", week.isoformat())
                summary.phases["weekly scoring + drift"] += time.perf_counter() - t
                if replay.has_job("train_job"):
                    t = time.perf_counter()
                    replay.tick("drift_retrain_sensor")
                    summary.phases["sensor-driven retraining"] += time.perf_counter() - t

    summary.phases["total"] = time.perf_counter() - started
    _fill_tables(paths, summary)
    return summary


def _fill_tables(paths: Paths, summary: DemoSummary) -> None:
    summary.tables["rows per raw table (loaded / quarantined)"] = _query(paths, """
        SELECT 'members' AS source, (SELECT count(*) FROM raw.members) AS loaded,
               (SELECT count(*) FROM raw.quarantine WHERE source = 'members') AS quarantined
        UNION ALL SELECT 'transactions', (SELECT count(*) FROM raw.transactions),
               (SELECT count(*) FROM raw.quarantine WHERE source = 'transactions')
        UNION ALL SELECT 'user_logs', (SELECT count(*) FROM raw.user_logs),
               (SELECT count(*) FROM raw.quarantine WHERE source = 'user_logs')
        UNION ALL SELECT 'churn_labels', (SELECT count(*) FROM raw.churn_labels),
               (SELECT count(*) FROM raw.quarantine WHERE source = 'churn_labels')""")
    summary.tables["quarantine reasons"] = _query(paths, """
        SELECT source, reason, count(*) AS rows FROM raw.quarantine GROUP BY ALL ORDER BY rows DESC LIMIT 10""")
    summary.tables["labels and KPI per month"] = _query(paths, """
        SELECT k.month, k.active_members, k.new_members, k.renewed, k.churned, round(k.churn_rate, 4) AS churn_rate
        FROM kpi.monthly_churn k ORDER BY k.month""")
    summary.tables["model promotions"] = _query(paths, """
        SELECT model_version, stage, decision, reason FROM ml.model_promotions ORDER BY decided_at""")
    summary.tables["weeks: scores, drift, decisions"] = _query(paths, """
        SELECT s.week_start, s.model_version, count(*) AS scored,
               count(*) FILTER (WHERE bucket = 'A') AS a, count(*) FILTER (WHERE bucket = 'B') AS b,
               count(*) FILTER (WHERE bucket = 'C') AS c,
               any_value(round(d.drift_share, 3)) AS drift_share, any_value(d.decision) AS decision
        FROM scoring.churn_scores s LEFT JOIN monitoring.drift_reports d USING (week_start)
        GROUP BY ALL ORDER BY s.week_start""")
    summary.tables["model performance once labels matured"] = _query(paths, """
        SELECT * FROM monitoring.model_performance ORDER BY target_month, model_version""")
    triggered = [r for r in summary.runs if r["tags"].get(SENSOR_NAME_TAG) == "drift_retrain_sensor"]
    summary.tables["runs requested by drift_retrain_sensor"] = pd.DataFrame(
        [{"job": r["job"], "week": r["tags"].get("churn/week") or r["tags"].get("churn/month"),
          "decision": r["tags"].get("churn/decision"), "success": r["success"]} for r in triggered]
    )
