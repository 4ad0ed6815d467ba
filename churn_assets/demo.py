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

import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from churn_assets.features.labels import final_on
from churn_assets.dates import add_months
from churn_assets.settings import Paths, paths_from_env

# 2016-05..2017-06: two months of history before the 2016-07 start of the brief, so that
# training months have full 90-day feature windows; the first model once Aug-Nov are final
# (30 Dec), scoring from 2 Jan. The shift of Feb 2017 first reaches labels in March's
# candidates (Feb sign-ups expiring in March), final on 30 April: the world runs to June so
# the replay shows the model learning it and the drift settling afterwards.
DEFAULT_WORLD = {"start": "2016-05", "months": 14, "scenarios": [("channel_shift", "2017-02")], "treatment_effect": 1.0}
TRAIN_MONTHS, MIN_HISTORY_MONTHS = 3, 3  # the model asset's TrainConfig defaults
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The demo's departures from production config: Optuna gets 5 trials, not 20, so a
# sensor-requested retune fits the demo's time budget; the call centre takes 120 calls a
# week, so bucket A is the 120 new contacts a call is worth most on (production default:
# everyone from the A threshold).
DEMO_CALL_CAPACITY = 120
DEMO_RUN_CONFIG = {
    "retune_job": {"ops": {"ml__churn_model": {"config": {"mode": "retune", "n_trials": 5, "timeout_s": 120.0}}}},
    "weekly_scoring_job": {"ops": {"scoring__churn_scores": {"config": {"call_capacity": DEMO_CALL_CAPACITY}}}},
}


@dataclass
class DemoSummary:
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    runs: list[dict] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    world: dict = field(default_factory=dict)
    story: list[str] = field(default_factory=list)
    charts: dict[str, Path] = field(default_factory=dict)  # chart name -> PNG file

    def render(self) -> str:
        lines = ["", "=== churn-assets demo summary ==="]
        if self.world:
            lines.append("world: " + ", ".join(f"{k}={v}" for k, v in self.world.items()))
        failed = [r for r in self.runs if not r["success"]]
        # a training run whose challenger the gate refused fails its blocking check: a decision, not a fault
        lines.append(f"Dagster runs: {len(self.runs)} ({len(failed)} did not succeed)"
                     + "".join(f"\n  {'REFUSED/FAILED' if r['job'] in ('train_job', 'retune_job') else 'FAILED'} "
                               f"{r['job']} {r['partition'] or ''} (week {r.get('week')})" for r in failed))
        if self.story:
            lines += ["", "-- the loop's story --", *self.story]
        for title, frame in self.tables.items():
            if frame is not None and len(frame):
                lines += ["", f"-- {title} --", frame.to_string(index=False)]
        if self.charts:
            lines += ["", "-- charts (PNG) --", *(f"  {name:<28}{path}" for name, path in self.charts.items())]
        lines += ["", "-- phases (seconds) --"]
        lines += [f"  {name:<28}{secs:8.1f}" for name, secs in self.phases.items()]
        lines += ["", "Browse it all with `make ui`; drift, quality and buckets over the weeks with `make monitor`;",
                  "query scores: see README 'Querying the scores'."]
        return "\n".join(lines)


class Replay:
    """Runs jobs and sensor ticks in-process on one instance, recording results."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, summary: DemoSummary,
                 run_config: dict[str, dict] | None = None):
        self.defs, self.instance, self.summary = defs, instance, summary
        self.run_config = run_config or {}  # job name -> run config, for every run of that job
        self.week: date | None = None  # the replay's current Monday, recorded with each run
        self.cursors: dict[str, str | None] = {}

    def has_job(self, name: str) -> bool:
        return any(job.name == name for job in self.defs.jobs or [])

    def run(self, job_name: str, partition_key: str | None = None, tags: dict | None = None,
            run_config: dict | None = None, asset_selection: list[dg.AssetKey] | None = None) -> bool:
        job = self.defs.resolve_job_def(job_name)
        # the console shows warnings only; every event still goes to the instance (make ui)
        config = {**(run_config or self.run_config.get(job_name) or {}), **QUIET_CONSOLE}
        result = job.execute_in_process(instance=self.instance, partition_key=partition_key, tags=tags or {},
                                        run_config=config, raise_on_error=False, asset_selection=asset_selection)
        if not result.success:
            print(f"  run {job_name} {partition_key or ''} did not succeed (run {result.run_id[:8]}; see make ui)")
        self.summary.runs.append({"job": job_name, "partition": partition_key, "success": result.success,
                                  "run_id": result.run_id, "tags": dict(tags or {}),
                                  "week": self.week.isoformat() if self.week else None})
        return result.success

    def tick(self, sensor_name: str) -> list[dg.RunRequest]:
        """Evaluate a sensor like the daemon would and execute its new run requests."""
        sensor = self.defs.resolve_sensor_def(sensor_name)
        resources = {k: v for k, v in (self.defs.resources or {}).items() if k in sensor.required_resource_keys}
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor_name),
                                          definitions=self.defs, sensor_name=sensor_name, resources=resources)
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
            self.run(job_name, request.partition_key, tags, request.run_config or None,
                     list(request.asset_selection) if request.asset_selection else None)
            executed.append(request)
        return executed


def mondays_in(month: date) -> list[date]:
    first = month + timedelta(days=(7 - month.weekday()) % 7)
    end = add_months(month, 1)
    return [first + timedelta(weeks=i) for i in range(6) if first + timedelta(weeks=i) < end]


def reset_state(paths: Paths) -> None:
    """A demo is a clean replay: forget the warehouse, MLflow, instance and reports."""
    for sub in ("landing", "warehouse", "mlflow", "dagster", "reports", "analytics", "serving_logs", "evidently"):
        shutil.rmtree(paths.data_dir / sub, ignore_errors=True)
    paths.duckdb_path.unlink(missing_ok=True)
    (paths.data_dir / "analytics.duckdb").unlink(missing_ok=True)


def new_world(paths: Paths, members: int, seed: int, world: dict):
    """A fresh stepped world under data/synthetic: it answers the replay's treatments, so it is
    written as the replay goes and never reused from an earlier replay."""
    from churn_assets.synthetic.effects import Effects
    from churn_assets.synthetic.simulator import SyntheticWorld

    source = paths.data_dir / "synthetic"
    shutil.rmtree(source, ignore_errors=True)
    return SyntheticWorld(source, members=members, start=world["start"], months=world["months"], seed=seed,
                          scenarios=world["scenarios"], effects=Effects(scale=world.get("treatment_effect", 1.0)))


def _treatments_before(paths: Paths, day: date) -> pd.DataFrame | None:
    """What marketing has done before `day`: the world's input (None before any treatment)."""
    from churn_assets.marketing.queries import read_earlier_treatments
    from churn_assets.synthetic.simulator import TREATMENT_KEYS

    if not paths.duckdb_path.exists():
        return None
    with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
        return read_earlier_treatments(con, day, list(TREATMENT_KEYS))


def _final_months(paths: Paths) -> set[date]:
    from churn_assets.features.labels import final_months

    if not paths.duckdb_path.exists():
        return set()
    with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
        return final_months(con)


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


def replay_mondays(months: list[date]) -> list[date]:
    """Every Monday from the first one inside the world to the first one after its data
    ends (that last Monday sees the final month whole)."""
    first = mondays_in(months[0])[0]
    end = add_months(months[-1], 1)
    last = end + timedelta(days=(7 - end.weekday()) % 7)
    return [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]


def run_demo(members: int = 20_000, seed: int = 7, reset: bool = True, world: dict | None = None,
             instance: dg.DagsterInstance | None = None, run_config: dict[str, dict] | None = None,
             online_traffic: bool = True, until: date | None = None) -> DemoSummary:
    """Replay a world Monday by Monday; `run_config` (job name -> run config) replaces DEMO_RUN_CONFIG;
    `online_traffic` False skips the weekly online requests and their serving drift; `until`
    is the last Monday replayed (None: every Monday of replay_mondays). The world is still
    generated to its end, so the oracle holds every month.

    Time-true: on each Monday the landing area holds only what had happened before it
    (DropCutter), the sensors see that, labels count once final by the data's watermark,
    and the model that scores the Monday was gated on labels final by then. Before the
    first model, Mondays that make no month final are skipped: nothing is scored yet, and
    the next delivery brings the same rows."""
    from churn_assets.definitions import build_definitions
    from churn_assets.monitoring.serving_log import replay_scored_week
    from churn_assets.synthetic.delivery import DropCutter

    world = world or DEFAULT_WORLD
    paths = paths_from_env()
    summary = DemoSummary(world={"members": members, "seed": seed, **world})
    started = time.perf_counter()
    if reset:
        reset_state(paths)
    synthetic = new_world(paths, members, seed, world)
    source = synthetic.out

    if instance is None:
        if not os.environ.get("DAGSTER_HOME"):
            raise RuntimeError("DAGSTER_HOME is not set: run `make demo`, which points it at the repo root")
        instance = dg.DagsterInstance.get()
        storage = Path(instance.storage_directory()).resolve()
        if not storage.is_relative_to(paths.data_dir):  # the reset above would not reset the instance
            raise RuntimeError(f"the Dagster instance stores runs in {storage}, outside CHURN_DATA_DIR "
                               f"{paths.data_dir}: point DAGSTER_HOME at a folder whose dagster.yaml keeps "
                               "storage under the data dir (run from the repo root for the default)")
    replay = Replay(build_definitions(), instance, summary, DEMO_RUN_CONFIG if run_config is None else run_config)
    has_model = replay.has_job("train_job")
    has_scoring = replay.has_job("weekly_scoring_job")
    drops = DropCutter(source / "landing")
    months = [date.fromisoformat(name + "-01") for name in synthetic.names]
    built: set[date] = set()  # target months whose labels/features/KPI are built (final)
    production = False

    world_end = add_months(months[-1], 1)
    due_final = set()  # months final by the replay's day (the full data up to it is delivered)
    for monday in replay_mondays(months):
        if until is not None and monday > until:
            break
        replay.week = monday
        newly_final = {m for m in months if final_on(m) <= monday} - due_final
        due_final |= newly_final
        if not production and not newly_final:
            continue  # before the first model only the Mondays that make a month final can change anything
        if monday.day <= 7:
            print(f"{monday:%Y-%m}: {len(summary.runs)} runs so far, {time.perf_counter() - started:.0f} s", flush=True)
        t = time.perf_counter()
        synthetic.advance(monday, _treatments_before(paths, monday))  # the world answers last week's actions
        summary.phases["generate world"] += time.perf_counter() - t
        t = time.perf_counter()
        if drops.deliver(monday, paths.landing):
            replay.tick("landing_sensor")
        summary.phases["ingest (weekly deliveries)"] += time.perf_counter() - t

        t = time.perf_counter()
        for target in sorted(_final_months(paths) - built):  # the months this delivery made final
            built.add(target)
            if target > months[0]:  # the first month has no history window, so no candidates
                replay.run("features_job", target.isoformat())
            if replay.has_job("performance_job") and production:
                replay.run("performance_job", target.isoformat())
        summary.phases["labels, features, KPI, performance"] += time.perf_counter() - t

        if has_model and not production and len(_trainable_months(paths)) >= TRAIN_MONTHS + 1:
            t = time.perf_counter()
            production = replay.run("train_job", tags={"churn/trigger": "demo: first model"})
            summary.phases["first training"] += time.perf_counter() - t

        # a Monday past the world's last day would be scored on days that never happened
        if has_scoring and production and monday < world_end:
            t = time.perf_counter()
            replay.run("weekly_scoring_job", monday.isoformat())
            summary.phases["weekly scoring + drift"] += time.perf_counter() - t
            if online_traffic and replay.has_job("serving_drift_job"):
                t = time.perf_counter()
                replay_scored_week(paths, monday)  # a sample of the week's scored members as online requests
                replay.run("serving_drift_job", monday.isoformat())
                summary.phases["online traffic + serving drift"] += time.perf_counter() - t
            if replay.has_job("train_job"):
                t = time.perf_counter()
                replay.tick("drift_retrain_sensor")
                summary.phases["sensor-driven retraining"] += time.perf_counter() - t

    synthetic.advance(None, _treatments_before(paths, world_end))   # the oracle of every final month
    summary.world["treatments_unmatched"] = synthetic.unmatched_treatments
    summary.phases["total"] = time.perf_counter() - started
    _fill_tables(paths, summary, source)
    return summary


def _fill_tables(paths: Paths, summary: DemoSummary, source: Path) -> None:
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
    promotions = _promotions(paths, summary)
    summary.tables["gate decisions"] = None if promotions is None else promotions[
        ["decided_week", "model_version", "stage", "decision", "trained_through", "reason"]]
    summary.tables["weeks: scores, drift, decisions"] = _query(paths, """
        SELECT s.week_start, s.model_version, count(*) AS scored,
               count(*) FILTER (WHERE bucket = 'A') AS a, count(*) FILTER (WHERE bucket = 'B') AS b,
               count(*) FILTER (WHERE bucket = 'C') AS c,
               any_value(round(d.drift_share, 3)) AS drift_share, any_value(d.decision) AS decision
        FROM scoring.churn_scores s LEFT JOIN monitoring.drift_reports d USING (week_start)
        GROUP BY ALL ORDER BY s.week_start""")
    summary.tables["model performance once labels matured"] = _query(paths, """
        SELECT * FROM monitoring.model_performance ORDER BY target_month, model_version""")
    from churn_assets.demo_story import RETENTION_TITLE
    from churn_assets.marketing.effect import retention_table

    summary.tables[RETENTION_TITLE] = retention_table(_retention_months(paths))
    triggered = [r for r in summary.runs if r["tags"].get(SENSOR_NAME_TAG) == "drift_retrain_sensor"]
    sensor_runs = pd.DataFrame(
        [{"job": r["job"], "week": r["week"], "event": r["tags"].get("churn/week") or r["tags"].get("churn/month"),
          "decision": r["tags"].get("churn/decision"), "data_window": r["tags"].get("churn/data_window"),
          "success": r["success"]} for r in triggered],
        columns=["job", "week", "event", "decision", "data_window", "success"])
    summary.tables["runs requested by drift_retrain_sensor"] = sensor_runs
    summary.tables["online traffic: serving drift per week"] = _query(paths, """
        SELECT week_start, n_requests, compared_rows, round(drift_share, 3) AS drift_share, drifted_columns, level,
               decision FROM monitoring.serving_drift ORDER BY week_start""")
    from churn_assets.monitoring.oracle_evaluation import compare_effects_with_oracle, compare_with_oracle

    summary.tables[EFFECT_TRUTH_TITLE] = _against_oracle(paths, source,
                                                         lambda con, o: compare_effects_with_oracle(con, o).round(4))
    summary.tables[OFFER_TRUTH_TITLE] = _against_oracle(paths, source, _offers_against_truth)
    oracle = _against_oracle(paths, source, compare_with_oracle)
    summary.tables["one-month-ahead quality against the oracle (first score of each expiry cycle)"] = oracle
    from churn_assets.monitoring.charts import demo_charts

    summary.charts = demo_charts(paths.duckdb_path, paths.reports / "demo", oracle)

    from churn_assets.demo_story import story_lines
    from churn_assets.defs.monitoring.assets import DriftConfig

    weeks = _query(paths, "SELECT week_start, model_version, drift_share, level, decision FROM monitoring.drift_reports")
    if weeks is None:
        weeks = _query(paths, "SELECT week_start, model_version, drift_share, decision FROM monitoring.drift_reports")
    summary.story = story_lines(
        [tuple(s) for s in summary.world.get("scenarios", [])],
        weeks if weeks is not None else pd.DataFrame(columns=["week_start", "model_version", "drift_share", "decision"]),
        promotions if promotions is not None else pd.DataFrame(columns=["stage", "decision"]),
        sensor_runs, DriftConfig().retrain_at)
    if oracle is not None and len(oracle):
        head = oracle[oracle["lead_band"] == "first_score"]
        summary.story.append("one month ahead (first score of each cycle) against the oracle on the same members:")
        summary.story += [
            f"  {pd.Timestamp(r.target_month):%Y-%m}: AUC {r.model_auc:.3f} vs {r.oracle_auc:.3f} "
            f"({r.auc_vs_oracle:.3f}x), log loss {r.model_log_loss:.3f} vs {r.oracle_log_loss:.3f} "
            f"({r.log_loss_vs_oracle:.3f}x), n={r.n_pairs}" for r in head.itertuples()]


def _retention_months(paths: Paths) -> pd.DataFrame | None:
    """The month rows of marketing.retention_effect (None before the warehouse exists)."""
    from churn_assets.marketing.queries import read_month_summaries

    try:
        with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
            return read_month_summaries(con)
    except duckdb.Error:
        return None


def _promotions(paths: Paths, summary: DemoSummary) -> pd.DataFrame | None:
    """ml.model_promotions with the replay week of each decision and the data each version
    learned (MLflow version tags: the training run's Dagster run id, trained_through)."""
    frame = _query(paths, "SELECT * FROM ml.model_promotions ORDER BY decided_at")
    if frame is None or frame.empty:
        return None
    from mlflow import MlflowClient

    from churn_assets.model.names import MODEL_NAME
    from churn_assets.model.versions import trained_through

    client = MlflowClient(paths.mlflow_tracking_uri)
    tags = {str(v.version): v.tags for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    week_of_run = {r["run_id"]: r["week"] for r in summary.runs}
    frame["model_version"] = frame["model_version"].astype(str)
    frame["trained_through"] = [trained_through(tags.get(v, {})) for v in frame["model_version"]]
    frame["decided_week"] = [week_of_run.get(tags.get(v, {}).get("dagster_run_id")) for v in frame["model_version"]]
    return frame


EFFECT_TRUTH_TITLE = ("retention effect per bucket (control minus treated churn, 95 % interval) against the "
                      "world's true effect on the treated members")
OFFER_TRUTH_TITLE = ("discount policy of bucket B against the truth: net revenue on the same paying members "
                     "(oracle-optimal: each member's best rung from the true probabilities, out of any model's "
                     "reach; best on the true risk: the best rung per decile of the true churn probability, a "
                     "perfect churn model without each member's effect; best on the score: the same on the score "
                     "deciles, the ceiling of a score-only policy; learned rung table: the shrunk uplift per rung, "
                     "the lower bound is what scoring decides on; learned per member: marketing.offer_model fitted on "
                     "the outcomes final by the end, on its lower bound and its estimate; assumed: the configured "
                     "table)")


def _against_oracle(paths: Paths, source: Path, evaluate) -> pd.DataFrame | None:
    """`evaluate(con, oracle_path)` on the warehouse and the simulator's oracle: evaluation code,
    the system itself never reads the oracle. None without either, or before the tables it reads."""
    oracle = source / "oracle" / "renewals.parquet"
    if not (oracle.exists() and paths.duckdb_path.exists()):
        return None
    try:
        with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
            return evaluate(con, oracle)
    except duckdb.Error:
        return None


def _per_member_offer(model, members: pd.DataFrame, confidence: float) -> np.ndarray:
    from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, DEFAULT_LADDER

    return model.choose(members["churn_probability"], members["active_days_30d"], members["monthly_price"],
                        DEFAULT_LADDER, DEFAULT_HORIZON_MONTHS, confidence)


def _offers_against_truth(con: duckdb.DuckDBPyConnection, oracle: Path) -> pd.DataFrame:
    """The learned and the assumed offer's true net revenue beside the oracle-optimal offer's."""
    from churn_assets.marketing.offer_model import fit_offer_model
    from churn_assets.marketing.queries import read_offer_evidence, read_offer_outcomes
    from churn_assets.marketing.uplift import learn_uplift
    from churn_assets.monitoring.oracle_evaluation import compare_offers_with_oracle
    from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, DEFAULT_LADDER, DEFAULT_UPLIFT

    learned = learn_uplift(read_offer_evidence(con, date.max), DEFAULT_UPLIFT)
    model = fit_offer_model(read_offer_outcomes(con, date.max), DEFAULT_LADDER)
    policies = {"learned rung table (lower bound)": learned.by_bucket("B", "uplift_low"),
                "learned rung table (estimate)": learned.by_bucket("B"), "assumed table": dict(DEFAULT_UPLIFT)}
    if model is not None:
        for name, confidence in (("lower bound", model.confidence), ("estimate", 0.5)):
            policies[f"learned per member ({name})"] = partial(_per_member_offer, model, confidence=confidence)
    return compare_offers_with_oracle(con, oracle, policies, DEFAULT_HORIZON_MONTHS).round(3)
