"""Serving drift: a week of logged online requests against the training reference of the model
that answered them, by the batch drift's own steps (churn_assets.monitoring.drift_week: Evidently's
tests, the version's gain weights and calibrated thresholds) and policy (policy.drift_policy).

Like the batch drift, only the training-like part of the traffic is compared (queries.is_candidate):
a request for a member on a long plan bought long ago is answered and counted in `n_requests`, but
its features are not those the model learned from. A week with fewer than `min_requests` such rows
is recorded (status 'no requests' / 'too few requests', decision 'none') without a verdict: a
distance on a handful of rows is noise, and the policy would then hold a level it never saw.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.monitoring import drift_week as steps
from churn_assets.monitoring.drift import DriftResult, add_missing_columns, prediction_drift, previous_week_row
from churn_assets.monitoring.policy import drift_policy, previous_level_for
from churn_assets.monitoring.queries import is_candidate
from churn_assets.monitoring.serving_log import read_log
from churn_assets.sql import replace_partition

SERVING_DRIFT_TABLE = "monitoring.serving_drift"
COMPARED, NO_REQUESTS, TOO_FEW = "compared", "no requests", "too few requests"
ROW_COLUMNS = ["week_start", "status", "n_requests", "n_calls", "model_version", "compared_rows", "reference_rows",
               "current_rows", "n_columns", "n_drifted", "drift_share", "column_share", "drifted_columns",
               "prediction_drift_score", "prediction_drifted", "level", "previous_level", "decision",
               "report_path", "weight_source", "threshold_source"]


class Settings(Protocol):
    """The drift settings a serving week uses (the asset's config): the batch drift's names."""

    retrain_at: float
    retune_at: float
    hysteresis: float
    render_html: str
    sample_size: int
    seed: int
    num_method: str | None
    cat_method: str | None


@dataclass(frozen=True)
class WeekRequests:
    week: dt.date
    logged: pd.DataFrame  # every row logged in [week, week + 7 days)
    version: str | None  # the version most rows were answered by (None: no rows)
    current: pd.DataFrame  # FEATURE_COLUMNS of that version's training-like rows
    answered: pd.DataFrame  # that version's rows (for the prediction drift)

    @property
    def n_calls(self) -> int:
        return int(self.logged["request_id"].nunique())


@dataclass(frozen=True)
class ServingVerdict:
    row: pd.DataFrame  # the week's one monitoring.serving_drift row
    result: DriftResult | None = None
    prediction: dict | None = None
    calibration: steps.Calibration | None = None

    def value(self, name: str):
        return self.row.iloc[0][name]


def week_window(week: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(week, tz="UTC")
    return start, start + pd.Timedelta(days=7)


def read_week(log_dir: Path, week: dt.date) -> WeekRequests:
    """The week's logged requests (UTC Monday to Monday), split by the answering version."""
    logged = read_log(log_dir, *week_window(week))
    if logged.empty:
        return WeekRequests(week, logged, None, logged.reindex(columns=FEATURE_COLUMNS), logged)
    version, answered, _ = steps.pick_version(logged)
    current = answered.loc[is_candidate(answered).fillna(False).astype(bool), FEATURE_COLUMNS].reset_index(drop=True)
    return WeekRequests(week, logged, version, current, answered)


def _row(requests: WeekRequests, version: str, status: str, **values) -> pd.DataFrame:
    row = {"week_start": requests.week, "status": status, "n_requests": len(requests.logged),
           "n_calls": requests.n_calls, "model_version": str(version or ""), "compared_rows": len(requests.current),
           "reference_rows": 0, "current_rows": 0, "n_columns": 0, "n_drifted": 0, "drift_share": np.nan,
           "column_share": np.nan, "drifted_columns": "", "prediction_drift_score": np.nan,
           "prediction_drifted": False, "level": "none", "previous_level": "", "decision": "none",
           "report_path": "", "weight_source": "", "threshold_source": "", **values}
    return pd.DataFrame([row], columns=ROW_COLUMNS)


def quiet_week(requests: WeekRequests, version: str | None) -> ServingVerdict:
    """The row of a week without enough training-like requests to judge: decision 'none'."""
    status = NO_REQUESTS if requests.logged.empty else TOO_FEW
    return ServingVerdict(_row(requests, version or "", status))


def compare_week(
    requests: WeekRequests, evidence, previous: dict | None, calibrate: Callable[[dict[str, str]], steps.Calibration],
    settings: Settings, html_path: Path,
) -> ServingVerdict:
    """The week's drift against `evidence` (the answering version's TrainingEvidence:
    reference_sample, feature_importance, validation_predictions) and its level / decision under
    the batch policy, `previous` being the week before's serving_drift row. `calibrate(methods)`
    gives the version's thresholds (drift_week.calibration_for: the batch drift's, cached per version).
    Renders Evidently's page to `html_path` when settings.render_html wants it."""
    if not requests.version or requests.current.empty:
        raise ValueError("compare_week needs logged training-like requests")
    s, reference = settings, evidence.reference_sample
    weights, weight_source = steps.weights_for(evidence.feature_importance)
    methods = steps.methods_for(reference, s.num_method, s.cat_method, s.sample_size, s.seed)
    calibration = calibrate(methods)
    result = steps.feature_drift(reference, requests.current, methods, calibration, weights, s.sample_size, s.seed)
    prediction = prediction_drift(evidence.validation_predictions, requests.answered, sample_size=s.sample_size,
                                  seed=s.seed, method=s.num_method)  # reported, never decides
    previous_level = previous_level_for(previous, requests.version)
    level, decision = drift_policy(result.drift_share, previous_level, s.retrain_at, s.retune_at, s.hysteresis)
    html = steps.render_or_remove(s.render_html, decision, html_path, reference, requests.current, result,
                                  s.sample_size, s.seed)
    drifted = result.columns.loc[result.columns["drifted"], "column_name"]
    row = _row(requests, requests.version, COMPARED, reference_rows=result.reference_rows,
               current_rows=result.current_rows, n_columns=result.n_columns, n_drifted=result.n_drifted,
               drift_share=result.drift_share, column_share=result.column_share, drifted_columns=",".join(drifted),
               prediction_drift_score=float(prediction["score"]), prediction_drifted=bool(prediction["drifted"]),
               level=level, previous_level=previous_level or "", decision=decision, report_path=str(html or ""),
               weight_source=weight_source, threshold_source=calibration.source)
    return ServingVerdict(row, result, prediction, calibration)


def html_path(reports: Path, week: dt.date) -> Path:
    return Path(reports) / "drift" / "serving" / f"{week.isoformat()}.html"


def previous_row(con: duckdb.DuckDBPyConnection, week: dt.date) -> dict | None:
    return previous_week_row(con, week, SERVING_DRIFT_TABLE)


def write_week(con: duckdb.DuckDBPyConnection, verdict: ServingVerdict) -> None:
    """Replace the week's row (and store the version's thresholds when calibrated just now)."""
    add_missing_columns(con, SERVING_DRIFT_TABLE, verdict.row)
    replace_partition(con, SERVING_DRIFT_TABLE, verdict.row, "week_start", verdict.value("week_start"))
    if verdict.calibration is not None:
        verdict.calibration.store_if_fresh(con)


def summary(verdict: ServingVerdict) -> str:
    v = verdict.value
    if v("status") != COMPARED:
        return (f"week {v('week_start')}: {v('n_requests')} logged rows, {v('compared_rows')} training-like: "
                f"{v('status')}, decision none")
    return (f"week {v('week_start')}: serving drift share {v('drift_share'):.3f} ({v('n_drifted')}/{v('n_columns')} "
            f"columns) over {v('compared_rows')} of {v('n_requests')} logged rows against model {v('model_version')}"
            f" -> level {v('level')}, previous {v('previous_level') or '-'}, decision {v('decision')}")
