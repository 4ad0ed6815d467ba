"""The monitoring dashboard: a local Evidently workspace (project `churn`) that every weekly
drift run and every realised-performance evaluation adds its snapshot to, through Evidently's
own workspace API, with dashboard panels that plot the snapshots over time. `make monitor`
opens it with `evidently ui`.

Snapshots are Evidently Report runs:
- weekly (`drift`, timestamp: the Monday): Evidently's ValueDrift of churn_probability, the
  week's scores against the version's validation scores on the samples the asset tested,
  plus the pipeline's numbers Evidently does not compute: the gain-weighted drift share, the
  policy's thresholds, each drifted column's gain weight, the decision, the scoring model
  version and the members per bucket;
- monthly (`performance`, timestamp: the target month): the realised first-score AUC and log
  loss per model version beside their validation values, and the retention experiment's
  month row (relative churn reduction) once it exists.
Re-materialising a week or a month replaces its snapshot (delete, then add), so the workspace
never holds two for one partition. A file lock serialises writers (parallel partitions).

MonitoringValue. One number of the pipeline labelled by quantity, label (a column, a bucket)
and model_version. The labels are the metric's parameters, so one panel plots one series per
column or per version without knowing them in advance. The number itself is read from the
run's `values` dataset (quantity, label, model_version, value): as a parameter it would make
every week a series of its own.

    link = log_drift_week(paths.evidently, week, report_row, result.columns, prediction, ...)
    link.url   # http://127.0.0.1:8000/projects/<project>/reports/<snapshot>
"""
from __future__ import annotations

import datetime as dt
import fcntl
import functools
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.metrics import ValueDrift
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
from evidently.sdk.panels import bar_plot_panel, line_plot_panel
from evidently.ui.storage.local.base import SNAPSHOTS_DIR_NAME
from evidently.ui.workspace import Project, Workspace

from churn_assets.core.links import evidently_dashboard_url, evidently_snapshot_url
from churn_assets.monitoring.drift import PREDICTION_COLUMN, sample_rows
from churn_assets.monitoring.policy import DECISIONS

PROJECT_NAME = "churn"
PROJECT_DESCRIPTION = ("Churn model monitoring: weekly drift (gain-weighted share, drifted columns, prediction "
                       "drift, decisions, bucket volumes) and monthly realised quality and retention effect.")
DRIFT, PERFORMANCE = "drift", "performance"  # snapshot kinds: a tag and metadata `kind`
KIND, PARTITION = "kind", "partition"
VALUES = "values"
VALUE_COLUMNS = ["quantity", "label", "model_version", "value"]
FIRST_SCORE = "first_score"  # performance.FIRST_SCORE (the headline band), without scikit-learn
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "churn-assets/evidently")
_LOCK_NAME = ".churn-assets.lock"


# ---------------------------------------------------------------- the custom metric


class MonitoringValue(SingleValueMetric):
    """A number the pipeline computed that Evidently does not (see the module docstring)."""

    quantity: str
    label: str = ""
    model_version: str = ""


class MonitoringValueCalculation(SingleValueCalculation[MonitoringValue]):
    def calculate(self, context, current_data, reference_data):
        source = context.additional_data.get(VALUES, current_data).as_dataframe()
        m = self.metric
        match = source[(source["quantity"] == m.quantity) & (source["label"] == m.label)
                       & (source["model_version"] == m.model_version)]
        if len(match) != 1:
            raise ValueError(f"{len(match)} rows of {VALUES} for {m.quantity}/{m.label}/{m.model_version}")
        return self.result(float(match["value"].iloc[0]))

    def display_name(self) -> str:
        m = self.metric
        return " ".join(p for p in (m.quantity, m.label, m.model_version and f"v{m.model_version}") if p)


def values_frame(rows) -> pd.DataFrame:
    """VALUE_COLUMNS from (quantity, label, model_version, value) tuples; missing numbers
    (NaN, None) are left out: a panel shows a gap, not a made-up zero."""
    frame = pd.DataFrame(list(rows), columns=VALUE_COLUMNS)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame = frame[np.isfinite(frame["value"])].astype({"quantity": str, "label": str, "model_version": str})
    duplicated = frame.duplicated(["quantity", "label", "model_version"])
    if duplicated.any():
        raise ValueError(f"values given twice: {frame[duplicated].to_dict('records')}")
    return frame.reset_index(drop=True)


def _value_metrics(values: pd.DataFrame) -> list[MonitoringValue]:
    return [MonitoringValue(quantity=r.quantity, label=r.label, model_version=r.model_version)
            for r in values.itertuples()]


# ---------------------------------------------------------------- what each snapshot holds


def decision_level(decision: object) -> float:
    """0 none, 1 retrain, 2 retune (NaN for anything else)."""
    return float(DECISIONS.index(decision)) if decision in DECISIONS else np.nan


def _numeric(version: object) -> float:
    try:
        return float(str(version))
    except ValueError:  # a registry whose versions are not numbers: no version line
        return np.nan


def drift_values(report_row: Mapping, columns: pd.DataFrame, prediction: Mapping, buckets: Mapping[str, int],
                 retrain_at: float, retune_at: float) -> pd.DataFrame:
    """The week's numbers: `report_row` (a monitoring.drift_reports row), `columns` (the drift
    result's COLUMN_FIELDS), `prediction` (its prediction row), `buckets` ({bucket: members})."""
    drifted = columns[columns["drifted"].astype(bool)]
    return values_frame([
        ("drift_share", "", "", report_row["drift_share"]),
        ("column_share", "", "", report_row.get("column_share")),
        ("n_drifted", "", "", report_row["n_drifted"]),
        ("n_columns", "", "", report_row["n_columns"]),
        ("retrain_at", "", "", retrain_at),
        ("retune_at", "", "", retune_at),
        ("drift_decision", "", "", decision_level(report_row["decision"])),
        ("drift_level", "", "", decision_level(report_row.get("level"))),
        ("scoring_version", "", "", _numeric(report_row["model_version"])),
        ("prediction_drift_threshold", "", "", prediction.get("threshold")),
        *(("column_weight", str(c), "", w) for c, w in zip(drifted["column_name"], drifted["weight"])),
        *(("bucket_members", str(b), "", n) for b, n in sorted(buckets.items())),
        ("scored_rows", "", "", sum(buckets.values()) if buckets else np.nan),
    ])


_PERFORMANCE_NUMBERS = ("auc", "auc_ci_low", "auc_ci_high", "log_loss", "relative_log_loss", "valid_auc",
                        "valid_log_loss", "n_scored", "churn_rate")
_RETENTION_NUMBERS = ("relative_reduction", "rr_ci_low", "rr_ci_high", "churn_rate_treated", "churn_rate_control",
                      "n_treated", "n_control")


def performance_values(perf: pd.DataFrame, decision: str, retention: Mapping | None = None) -> pd.DataFrame:
    """The month's numbers: the headline rows of `perf` (monitoring.model_performance rows),
    one set per model version, the month's decision and the retention month row if any."""
    headline = perf[perf["lead_band"] == FIRST_SCORE] if "lead_band" in perf.columns else perf
    rows = [(name, "", str(r["model_version"]), r.get(name)) for r in headline.to_dict("records")
            for name in _PERFORMANCE_NUMBERS]
    rows.append(("performance_decision", "", "", decision_level(decision)))
    if retention is not None:
        rows += [(name, "", "", retention.get(name)) for name in _RETENTION_NUMBERS]
    return values_frame(rows)


def _timestamp(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def _metadata(kind: str, partition: dt.date, extra: Mapping[str, object]) -> dict[str, str]:
    return {KIND: kind, PARTITION: partition.isoformat(), **{k: str(v) for k, v in extra.items() if v is not None}}


def _scores(frame: pd.DataFrame | pd.Series, sample_size: int, seed: int) -> pd.DataFrame:
    """The prediction column as prediction_drift tests it: non-null, sampled with the same seed."""
    frame = frame.to_frame(PREDICTION_COLUMN) if isinstance(frame, pd.Series) else frame
    return sample_rows(frame[[PREDICTION_COLUMN]].dropna(), sample_size, seed).astype("float64")


def drift_snapshot(week: dt.date, values: pd.DataFrame, reference_scores, current_scores, method: str | None,
                   sample_size: int = 5000, seed: int = 0, metadata: Mapping[str, object] | None = None):
    """The week's Evidently run: ValueDrift of churn_probability with the test the asset used
    (`method`; None: Evidently's choice), and one MonitoringValue per row of `values`."""
    ref, cur = _scores(reference_scores, sample_size, seed), _scores(current_scores, sample_size, seed)
    extra = dict(timestamp=_timestamp(week), tags=[DRIFT], metadata=_metadata(DRIFT, week, metadata or {}),
                 name=f"drift {week.isoformat()}")
    if not (len(ref) and len(cur)):  # an empty side has no distribution to test
        return Report(_value_metrics(values)).run(Dataset.from_pandas(values), None, **extra)
    definition = DataDefinition(numerical_columns=[PREDICTION_COLUMN])
    return Report([ValueDrift(column=PREDICTION_COLUMN, method=method), *_value_metrics(values)]).run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition),
        additional_data={VALUES: Dataset.from_pandas(values)}, **extra,
    )


def performance_snapshot(month: dt.date, values: pd.DataFrame, metadata: Mapping[str, object] | None = None):
    """The month's Evidently run: one MonitoringValue per row of `values`."""
    return Report(_value_metrics(values)).run(
        Dataset.from_pandas(values), None, timestamp=_timestamp(month), tags=[PERFORMANCE],
        metadata=_metadata(PERFORMANCE, month, metadata or {}), name=f"performance {month:%Y-%m}",
    )


# ---------------------------------------------------------------- the dashboard


DRIFT_TAB, PERFORMANCE_TAB, SCORING_TAB, RETENTION_TAB = "Drift", "Performance", "Scoring", "Retention"


def _series(quantity: str, legend: str, tag: str, **labels: str) -> PanelMetric:
    return PanelMetric(metric="MonitoringValue", metric_labels={"quantity": quantity, **labels}, legend=legend,
                       tags=[tag])


def _panels() -> list[tuple[str, str, DashboardPanelPlot]]:
    """(tab, key, panel) of the dashboard, in display order."""
    return [
        (DRIFT_TAB, "drift_share", line_plot_panel(
            "Drift share per week, with the policy's thresholds",
            [_series("drift_share", "drift share (gain-weighted)", DRIFT),
             _series("retrain_at", "retrain at", DRIFT), _series("retune_at", "retune at", DRIFT)],
            "Share of the scoring model's gain in columns whose drift test fired, against its training window.")),
        (DRIFT_TAB, "drifted_columns", bar_plot_panel(
            "Drifted columns: each one's share of the model's gain",
            [_series("column_weight", "{{label}}", DRIFT)],
            "Stacked per week, the bars add up to the drift share.", stacked=True)),
        (DRIFT_TAB, "drifted_count", line_plot_panel(
            "Drifted columns (count)",
            [_series("n_drifted", "drifted", DRIFT), _series("n_columns", "tested", DRIFT)], size="half")),
        (DRIFT_TAB, "prediction_drift", line_plot_panel(
            "Prediction drift: churn_probability vs the model's validation scores",
            [PanelMetric(metric="ValueDrift", metric_labels={"column": PREDICTION_COLUMN}, legend="{{method}}",
                         tags=[DRIFT]),
             _series("prediction_drift_threshold", "threshold", DRIFT)],
            "Evidently's drift score of the model output (reported, never decided on).", size="half")),
        (DRIFT_TAB, "decisions", line_plot_panel(
            "Decision (0 none, 1 retrain, 2 retune) and the scoring model version",
            [_series("drift_decision", "decision", DRIFT), _series("drift_level", "level this week", DRIFT),
             _series("scoring_version", "model version", DRIFT)])),
        (PERFORMANCE_TAB, "auc", line_plot_panel(
            "One-month-ahead AUC per month and model version",
            [_series("auc", "v{{model_version}} realised", PERFORMANCE),
             _series("valid_auc", "v{{model_version}} validation", PERFORMANCE)],
            "First score of each expiry cycle (>= 21 days ahead), once the month's labels are final.")),
        (PERFORMANCE_TAB, "log_loss", line_plot_panel(
            "One-month-ahead log loss per month and model version",
            [_series("log_loss", "v{{model_version}} realised", PERFORMANCE),
             _series("valid_log_loss", "v{{model_version}} validation", PERFORMANCE)])),
        (SCORING_TAB, "buckets", bar_plot_panel(
            "Members scored per week and bucket",
            [_series("bucket_members", "{{label}}", DRIFT)],
            "A: call, B: discount offer, C: appreciation e-mail.", stacked=True)),
        (RETENTION_TAB, "retention", line_plot_panel(
            "Retention effect: relative churn reduction, treated vs control, per month",
            [_series("relative_reduction", "relative reduction", PERFORMANCE),
             _series("rr_ci_low", "95 % interval, low", PERFORMANCE),
             _series("rr_ci_high", "95 % interval, high", PERFORMANCE)],
            "1 - treated churn / control churn of the month's expiries, once their labels are final.")),
    ]


def _id(kind: str, key: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{kind}/{key}")  # stable: re-runs find their own panels


def desired_dashboard(current: DashboardModel) -> DashboardModel:
    """`current` with this module's tabs and panels in place (same ids every run); panels and
    tabs someone added in the UI are kept."""
    ours = [(tab, panel.copy(update={"id": _id("panel", key)})) for tab, key, panel in _panels()]
    our_ids = {panel.id for _, panel in ours}
    tabs: dict[str, DashboardTabModel] = {}
    for tab, panel in ours:
        tabs.setdefault(tab, DashboardTabModel(id=_id("tab", tab), title=tab, panels=[])).panels.append(panel.id)
    our_tab_ids = {t.id for t in tabs.values()}
    return DashboardModel(
        tabs=[*tabs.values(), *(t for t in current.tabs if t.id not in our_tab_ids)],
        panels=[*(p for _, p in ours), *(p for p in current.panels if p.id not in our_ids)],
    )


# ---------------------------------------------------------------- the workspace


@dataclass(frozen=True)
class SnapshotLink:
    project_id: str
    snapshot_id: str
    replaced: int  # earlier snapshots of the same partition deleted

    @property
    def url(self) -> str:
        return evidently_snapshot_url(self.project_id, self.snapshot_id)

    @property
    def dashboard_url(self) -> str:
        return evidently_dashboard_url(self.project_id)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / _LOCK_NAME, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


@functools.lru_cache(maxsize=8)
def _workspace(path: str) -> Workspace:
    """One Workspace per folder and process. Constructing one parses every snapshot (Evidently
    loads them for its dataset manager, ~15 ms each, so a weekly add would grow with the
    history); the calls used here (projects, dashboard, runs) read and write the folder
    itself, so a kept instance never answers from a stale copy."""
    return Workspace.create(path)


def workspace_at(path: Path | str) -> Workspace:
    Path(path).mkdir(parents=True, exist_ok=True)
    return _workspace(str(Path(path).resolve()))


def ensure_project(workspace: Workspace) -> Project:
    """Project `churn` (found by name, created once) with its dashboard up to date."""
    found = sorted(workspace.search_project(PROJECT_NAME), key=lambda p: str(p.id))
    project = found[0] if found else workspace.create_project(PROJECT_NAME, PROJECT_DESCRIPTION)
    current = workspace.get_dashboard(project.id)
    desired = desired_dashboard(current)
    if desired.dict() != current.dict():
        workspace.save_dashboard(project.id, desired)
    return project


def open_project(path: Path | str) -> tuple[Workspace, Project]:
    """The workspace at `path` (created if missing) and its project `churn`."""
    with _locked(Path(path)):
        workspace = workspace_at(path)
        return workspace, ensure_project(workspace)


def _metadata_of(workspace: Workspace, project_id, snapshot_id) -> dict:
    """A snapshot's metadata. The local workspace's file is read as plain JSON (~1 ms, where
    get_run's full parse takes ~15 ms, paid for every snapshot on every add)."""
    file = Path(workspace.path) / str(project_id) / SNAPSHOTS_DIR_NAME / f"{snapshot_id}.json"
    try:
        with open(file, encoding="utf-8") as handle:
            return json.load(handle).get("metadata") or {}
    except FileNotFoundError:  # another layout: ask the workspace
        return dict(workspace.get_run(project_id, snapshot_id).metadata)


def snapshots_of(workspace: Workspace, project_id, kind: str, partition: dt.date) -> list:
    """Ids of the project's snapshots of `kind` for `partition`."""
    found = []
    for snapshot_id in workspace.list_runs(project_id):
        meta = _metadata_of(workspace, project_id, snapshot_id)
        if meta.get(KIND) == kind and meta.get(PARTITION) == partition.isoformat():
            found.append(snapshot_id)
    return found


def add_snapshot(path: Path | str, snapshot, kind: str, partition: dt.date) -> SnapshotLink:
    """Add `snapshot` to project `churn` of the workspace at `path`, replacing the partition's
    earlier snapshots of the same kind."""
    with _locked(Path(path)):
        workspace = workspace_at(path)
        project = ensure_project(workspace)
        earlier = snapshots_of(workspace, project.id, kind, partition)
        for snapshot_id in earlier:
            workspace.delete_run(project.id, snapshot_id)
        ref = workspace.add_run(project.id, snapshot)
    return SnapshotLink(str(project.id), str(ref.id), len(earlier))


def log_drift_week(
    path: Path | str, week: dt.date, report_row: Mapping, columns: pd.DataFrame, prediction: Mapping,
    reference_scores, current_scores, buckets: Mapping[str, int], *, retrain_at: float, retune_at: float,
    sample_size: int = 5000, seed: int = 0, links: Mapping[str, object] | None = None,
) -> SnapshotLink:
    """The drift_report asset's one call: the week's snapshot into the workspace at `path`.
    `links` (e.g. the Dagster and MLflow run URLs) go into the snapshot's metadata."""
    values = drift_values(report_row, columns, prediction, buckets, retrain_at, retune_at)
    meta = {"model_version": report_row["model_version"], "decision": report_row["decision"], **(links or {})}
    snapshot = drift_snapshot(week, values, reference_scores, current_scores, prediction.get("method"),
                              sample_size, seed, meta)
    return add_snapshot(path, snapshot, DRIFT, week)


def log_performance_month(path: Path | str, month: dt.date, perf: pd.DataFrame, decision: str, version: str,
                          retention: Mapping | None = None,
                          links: Mapping[str, object] | None = None) -> SnapshotLink:
    """The model_performance asset's one call: the month's snapshot into the workspace at `path`."""
    values = performance_values(perf, decision, retention)
    snapshot = performance_snapshot(month, values, {"model_version": version, "decision": decision, **(links or {})})
    return add_snapshot(path, snapshot, PERFORMANCE, month)


def version_run_id(client, version: str) -> str:
    """The MLflow run that produced `version` of churn_model (`client`: an MlflowClient)."""
    from churn_assets.model.names import MODEL_NAME

    return client.get_model_version(MODEL_NAME, str(version)).run_id


def month_row(summaries: pd.DataFrame, month: dt.date) -> dict | None:
    """The month's row of marketing.retention_effect month rows (read_month_summaries), or None."""
    if summaries is None or summaries.empty:
        return None
    rows = summaries[pd.to_datetime(summaries["target_month"]).dt.date == month]
    return rows.iloc[0].to_dict() if len(rows) else None
