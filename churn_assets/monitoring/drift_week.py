"""One week's drift report, step by step, for the drift_report asset: read the week, pick
the model version that scored it, calibrate (or read back) its thresholds, render or
remove the HTML, and shape the rows of monitoring.drift_reports / drift_columns.

The warehouse is passed as a connection or as `connect` (a context-manager factory such
as Warehouse.get_connection), so the DuckDB lock is released while Evidently computes.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS
from churn_assets.monitoring.drift import (
    DriftResult, add_missing_columns, cached_thresholds, calibrate_thresholds, compute_drift, feature_weights,
    previous_week_row, reference_months, render_drift_html, render_wanted, resolve_methods, store_thresholds,
    threshold_map, window_weeks,
)
from churn_assets.monitoring.queries import (
    can_build_features, candidate_scores, candidates_of_week, is_candidate, scored_row_count, scored_weeks,
    trainable_through,
)
from churn_assets.scoring.queries import build_scoring_features
from churn_assets.sql import replace_partition

DRIFT_REPORTS_TABLE = "monitoring.drift_reports"
DRIFT_COLUMNS_TABLE = "monitoring.drift_columns"
COLUMNS_ORDER = ["week_start", "column_name", "method", "score", "drifted", "threshold", "kind",
                 "weight", "default_threshold"]

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
BuildFeatures = Callable[[duckdb.DuckDBPyConnection, dt.date], pd.DataFrame]


@dataclass(frozen=True)
class WeekInputs:
    current: pd.DataFrame  # FEATURE_COLUMNS of the training-like population
    scores: pd.DataFrame  # model_version, churn_probability of the same members
    scored_rows: int  # every score of the week, long plans included
    previous: dict | None  # the week before's drift_reports row
    trainable: dt.date | None  # newest final labelled month a training run could use now


def read_week(con: duckdb.DuckDBPyConnection, week: dt.date) -> WeekInputs:
    return WeekInputs(
        current=candidates_of_week(con, week),
        scores=candidate_scores(con, week),
        scored_rows=scored_row_count(con, week),
        previous=previous_week_row(con, week, DRIFT_REPORTS_TABLE),
        trainable=trainable_through(con),
    )


def pick_version(scores: pd.DataFrame) -> tuple[str, pd.DataFrame, dict[str, int]]:
    """(version, its scores, rows per version). A week re-scored mid-week is compared against
    the model most rows carry."""
    versions = scores["model_version"].value_counts()
    version = str(versions.index[0])
    if len(versions) > 1:
        scores = scores[scores["model_version"] == version]
    return version, scores, versions.to_dict()


def stationary_weeks(
    con: duckdb.DuckDBPyConnection, weeks: list[dt.date], build: BuildFeatures | None = None
) -> tuple[dict[dt.date, pd.DataFrame], int, int]:
    """({week: training-like population} of the weeks with rows, weeks found, weeks built) for
    weeks inside the training window: read from the scoring features, or built by `build`
    (from raw rows dated before the week only) for weeks nobody scored, e.g. those before
    the first model."""
    frames, built = {}, 0
    scored = scored_weeks(con, weeks)
    can_build = build is not None and can_build_features(con)
    for week in weeks:
        if week in scored:
            frames[week] = candidates_of_week(con, week)
        elif can_build:
            features = build(con, week)
            frames[week] = features.loc[is_candidate(features), FEATURE_COLUMNS]
            built += 1
    return {w: f for w, f in frames.items() if len(f)}, len(frames), built


@dataclass(frozen=True)
class Calibration:
    """A version's per-column thresholds (None: Evidently's defaults), and whether they were
    calibrated now (then stored with the week) or read back."""

    version: str
    table: pd.DataFrame | None
    factor: float
    sample_size: int
    fresh: bool
    weeks: dict[str, int] = field(default_factory=dict)  # found, built, in_window (fresh only)

    @property
    def source(self) -> str:
        return "calibrated" if self.table is not None else "evidently defaults"

    def store_if_fresh(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.fresh and self.table is not None:
            store_thresholds(con, self.version, self.table, self.factor, self.sample_size)


def calibration_for(
    connect: Connect, version: str, reference: pd.DataFrame, methods: dict[str, str], factor: float,
    sample_size: int, seed: int, build: BuildFeatures | None = build_scoring_features,
) -> Calibration:
    """Thresholds depend on the version's reference only: calibrated once on its training
    months and the weeks inside its window (unscored weeks built by `build`), then read back
    from monitoring.drift_thresholds."""
    with connect() as con:
        cached = cached_thresholds(con, version, methods, factor, sample_size)
        if cached is not None:
            return Calibration(version, cached, factor, sample_size, fresh=False)
        window = window_weeks(reference_months(reference))
        frames, found, built = stationary_weeks(con, window, build)
    table = calibrate_thresholds(reference, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, methods, factor, sample_size,
                                 seed, stationary_weeks=frames)
    return Calibration(version, table, factor, sample_size, fresh=True,
                       weeks={"found": found, "built": built, "in_window": len(window)})


def drift_html_path(reports: Path, week: dt.date) -> Path:
    return Path(reports) / "drift" / f"{week.isoformat()}.html"


def render_or_remove(
    mode: str, decision: str, html_path: Path, reference: pd.DataFrame, current: pd.DataFrame,
    result: DriftResult, sample_size: int, seed: int,
) -> Path | None:
    """The Evidently page when the mode and decision want it (None when not rendered). A page
    not wanted is deleted: a re-run must not leave an earlier verdict's page behind."""
    if not render_wanted(mode, decision):
        html_path.unlink(missing_ok=True)
        return None
    snapshot = render_drift_html(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, result, html_path,
                                 sample_size, seed)
    return None if snapshot is None else html_path


def report_row(
    week: dt.date, version: str, result: DriftResult, level: str, decision: str, html_path: Path | None,
    previous_level: str | None, weight_source: str, threshold_source: str,
) -> pd.DataFrame:
    """The week's one monitoring.drift_reports row."""
    return pd.DataFrame([{
        "week_start": week, "model_version": version,
        "reference_rows": result.reference_rows, "current_rows": result.current_rows,
        "n_columns": result.n_columns, "n_drifted": result.n_drifted, "drift_share": result.drift_share,
        "column_share": result.column_share, "level": level, "decision": decision,
        "report_path": str(html_path or ""), "previous_level": previous_level or "",
        "weight_source": weight_source, "threshold_source": threshold_source,
    }])


def column_rows(week: dt.date, result: DriftResult, prediction: dict) -> pd.DataFrame:
    """monitoring.drift_columns rows: the features, then the prediction row (told apart by kind)."""
    columns = pd.concat([
        result.columns.assign(kind="feature"),
        pd.DataFrame([prediction]).assign(kind="prediction"),
    ], ignore_index=True)
    columns.insert(0, "week_start", week)
    return columns[COLUMNS_ORDER]


def write_week(con: duckdb.DuckDBPyConnection, week: dt.date, report: pd.DataFrame, columns: pd.DataFrame) -> None:
    for table, frame in ((DRIFT_REPORTS_TABLE, report), (DRIFT_COLUMNS_TABLE, columns)):
        add_missing_columns(con, table, frame)  # tables written before these columns existed
        replace_partition(con, table, frame, "week_start", week)


def weights_for(importance: pd.DataFrame | None) -> tuple[pd.Series, str]:
    """(weight per feature, 'gain' or 'equal') from the version's logged feature importance."""
    return feature_weights(importance, FEATURE_COLUMNS)


def methods_for(reference: pd.DataFrame, num_method: str | None, cat_method: str | None, sample_size: int,
                seed: int) -> dict[str, str]:
    """Each feature's Evidently test, resolved once on the version's reference."""
    return resolve_methods(reference, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, num_method, cat_method, sample_size, seed)


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, methods: dict[str, str], calibration: Calibration,
    weights: pd.Series, sample_size: int, seed: int,
) -> DriftResult:
    """The week's feature drift against the reference, with the version's thresholds and gain weights."""
    return compute_drift(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, sample_size=sample_size, seed=seed,
                         methods=methods, thresholds=threshold_map(calibration.table), weights=weights)
