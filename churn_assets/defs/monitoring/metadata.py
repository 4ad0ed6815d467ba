"""The materialisation metadata of the monitoring assets. drift_retrain_sensor reads
`decision`, `drift_share`, `trainable_through`, `model_trained_through` and
`production_trained_through` from it; the rest is for the Dagster UI.
(Evidently and scikit-learn are imported only when an asset runs: the code server loads fast.)"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from churn_assets.defs.metadata import frame_metadata

if TYPE_CHECKING:
    from churn_assets.monitoring.dashboard import SnapshotLink
    from churn_assets.monitoring.drift import DriftResult
    from churn_assets.monitoring.drift_week import Calibration
    from churn_assets.monitoring.performance import MonthVerdict

TOP_COLUMNS = 10
PERFORMANCE_NUMBERS = ("auc", "auc_ci_low", "auc_ci_high", "valid_auc", "log_loss", "valid_log_loss",
                       "relative_log_loss", "valid_relative_log_loss", "base_log_loss", "pr_auc", "churn_rate")


def iso(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def top_columns_markdown(columns: pd.DataFrame) -> str:
    top = columns.head(TOP_COLUMNS)[["column_name", "weight", "method", "score", "threshold", "drifted"]]
    return top.to_markdown(index=False, floatfmt=".4g") if len(top) else "_no columns_"


def top_drifted(result: DriftResult) -> list[dict]:
    drifted = result.columns[result.columns["drifted"]]
    return [{"column": r.column_name, "weight": round(float(r.weight), 4), "score": round(float(r.score), 4),
             "threshold": round(float(r.threshold), 4)} for r in drifted.head(TOP_COLUMNS).itertuples()]


def thresholds_summary(config, calibration: Calibration) -> dict:
    """The levels in force and where the per-column thresholds came from (`config`: DriftConfig)."""
    table = calibration.table
    raised = table[table["threshold"] > table["default_threshold"]] if table is not None else []
    return {
        "retrain_at": config.retrain_at, "retune_at": config.retune_at, "hysteresis": config.hysteresis,
        "source": calibration.source, "calibration_factor": config.calibration_factor,
        "raised": {r.column_name: round(float(r.threshold), 4) for r in raised.itertuples()} if len(raised) else {},
        "stationary_months": int(table["months"].max()) if table is not None else 0,
        "stationary_weeks": int(table["weeks"].max()) if table is not None else 0,
    }


def drift_metadata(
    report: pd.DataFrame, result: DriftResult, prediction: dict, calibration: Calibration, config, *,
    scored_rows: int, compared_rows: int, trained_through: dt.date | None, production_trained_through: dt.date | None,
    trainable: dt.date | None,
) -> dict:
    """drift_report's metadata: the week's row plus the decision and what it rests on."""
    row = report.iloc[0]
    return frame_metadata(report, extra={
        "decision": dg.MetadataValue.text(row["decision"]),
        "level": dg.MetadataValue.text(row["level"]),
        "previous_level": dg.MetadataValue.text(row["previous_level"]),
        "drift_share": dg.MetadataValue.float(float(result.drift_share)),
        "column_share": dg.MetadataValue.float(float(result.column_share)),
        "n_drifted": dg.MetadataValue.int(result.n_drifted),
        "model_version": dg.MetadataValue.text(row["model_version"]),
        "model_trained_through": dg.MetadataValue.text(iso(trained_through)),
        "production_trained_through": dg.MetadataValue.text(iso(production_trained_through)),
        "trainable_through": dg.MetadataValue.text(iso(trainable)),
        "scored_rows": dg.MetadataValue.int(int(scored_rows)),
        "compared_rows": dg.MetadataValue.int(int(compared_rows)),  # the training-like population
        "prediction_drift_score": dg.MetadataValue.float(float(prediction["score"])),
        "prediction_drift_method": dg.MetadataValue.text(str(prediction["method"])),
        "prediction_drifted": dg.MetadataValue.bool(bool(prediction["drifted"])),
        "top_drifted": dg.MetadataValue.json(top_drifted(result)),
        "top_drifted_columns": dg.MetadataValue.md(top_columns_markdown(result.columns)),
        "report_path": dg.MetadataValue.path(row["report_path"]),
        "weight_source": dg.MetadataValue.text(row["weight_source"]),
        "thresholds": dg.MetadataValue.json(thresholds_summary(config, calibration)),
        # below ~1000 rows Evidently uses p-value tests: ~5% of stable columns flag by chance
        "small_sample": dg.MetadataValue.bool(min(result.reference_rows, result.current_rows) <= 1000),
        "retrain_at": dg.MetadataValue.float(config.retrain_at),
        "retune_at": dg.MetadataValue.float(config.retune_at),
    })


def link_metadata(snapshot: SnapshotLink, mlflow_run_url: str | None = None) -> dict:
    """Where the materialisation's numbers are shown over time: its Evidently snapshot, the
    monitoring dashboard and (drift) the MLflow run of the model version that scored the week."""
    links = {
        "evidently_snapshot": dg.MetadataValue.url(snapshot.url),
        "evidently_dashboard": dg.MetadataValue.url(snapshot.dashboard_url),
    }
    if mlflow_run_url:
        links["mlflow_run"] = dg.MetadataValue.url(mlflow_run_url)
    return links


def drift_summary(week: dt.date, result: DriftResult, report: pd.DataFrame) -> str:
    """The log line of a week's verdict."""
    row = report.iloc[0]
    return (f"week {week}: drift share {result.drift_share:.3f} (gain-weighted; {result.n_drifted}/"
            f"{result.n_columns} columns) against model {row['model_version']} -> level {row['level']}, previous "
            f"{row['previous_level'] or '-'}, decision {row['decision']}")


def performance_metadata(
    verdict: MonthVerdict, pairs: pd.DataFrame, n_labels: int, config, *, trained_through: dt.date | None,
    production_trained_through: dt.date | None, trainable: dt.date | None,
) -> dict:
    """model_performance's metadata: the bands table plus the headline's numbers and decision
    (`config`: PerformanceConfig)."""
    from churn_assets.monitoring.performance import bands_markdown

    return frame_metadata(verdict.perf, extra={
        "decision": dg.MetadataValue.text(verdict.decision),
        "model_version": dg.MetadataValue.text(verdict.version),
        **{name: dg.MetadataValue.float(verdict.number(name)) for name in PERFORMANCE_NUMBERS},
        "n_scored": dg.MetadataValue.int(verdict.n_scored),  # the headline's
        "late_first_scores": dg.MetadataValue.int(verdict.late_first_scores),
        "scored_share_of_candidates": dg.MetadataValue.float(pairs["msno"].nunique() / n_labels if n_labels else 0.0),
        "lead_bands": dg.MetadataValue.md(bands_markdown(verdict.perf)),
        "model_trained_through": dg.MetadataValue.text(iso(trained_through)),
        "production_trained_through": dg.MetadataValue.text(iso(production_trained_through)),
        "trainable_through": dg.MetadataValue.text(iso(trainable)),
        "auc_margin": dg.MetadataValue.float(config.auc_margin),
        "relative_log_loss_margin": dg.MetadataValue.float(config.relative_log_loss_margin),
    })


def performance_summary(month: dt.date, verdict: MonthVerdict) -> str:
    """The log line of a month's verdict."""
    n = verdict.number
    return (f"{month:%Y-%m}: model {verdict.version} first-score AUC {n('auc'):.4f} "
            f"[{n('auc_ci_low'):.4f}, {n('auc_ci_high'):.4f}] (validation {n('valid_auc'):.4f}), "
            f"relative log loss {n('relative_log_loss'):.4f} "
            f"(validation {n('valid_relative_log_loss'):.4f}) -> {verdict.decision}")
