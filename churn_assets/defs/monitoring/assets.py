"""Monitoring assets: weekly Evidently drift against the model's own training
reference, and monthly realised quality once labels are final.

Both record a `decision` ('none' / 'retrain' / 'retune') in their
materialisation metadata; drift_retrain_sensor (sensors.py) turns those into runs.
Each adds its snapshot to the Evidently workspace (`make monitor`; churn_assets.monitoring.dashboard)
and links to it from its metadata. The steps and SQL live in churn_assets.monitoring (drift_week,
performance, queries);
MLflow comes through the `registry` resource, the reports folder through `storage`.
Evidently (~10 s) and MLflow (~5 s) are imported inside the assets so the code
server loads the definitions quickly. (No `from __future__ import annotations`:
Dagster reads the Config annotations at definition time.)
"""
from collections.abc import Iterator
from typing import Literal

import dagster as dg
from pydantic import Field

from churn_assets.analytics.publish import publish
from churn_assets.core.buckets import A_THRESHOLD
from churn_assets.core.links import dagster_run_url
from churn_assets.dates import week_of
from churn_assets.defs import keys
from churn_assets.defs.finality import final_month_or_none
from churn_assets.defs.monitoring.metadata import (
    drift_metadata, drift_summary, link_metadata, performance_metadata, performance_summary,
)
from churn_assets.defs.partitions import monthly_partitions, weekly_partitions
from churn_assets.defs.resources import ModelRegistry, Storage, Warehouse
from churn_assets.monitoring.history import week_bucket_counts
from churn_assets.monitoring.policy import (
    DEFAULT_HYSTERESIS, DEFAULT_RETRAIN_AT, DEFAULT_RETUNE_AT, drift_policy, previous_level_for, validate_thresholds,
)
from churn_assets.monitoring.queries import (
    LABELS_TABLE, SCORES_TABLE, SCORING_FEATURES_TABLE, label_count, missing_tables, trainable_through,
)


# ---------------------------------------------------------------- drift


class DriftConfig(dg.Config):
    retrain_at: float = Field(
        default=DEFAULT_RETRAIN_AT, description="Drift share (the production model's gain share of the drifted "
        "columns) from which the production recipe is refit.")
    retune_at: float = Field(
        default=DEFAULT_RETUNE_AT, description="Drift share from which hyper-parameters are searched again.")
    hysteresis: float = Field(
        default=DEFAULT_HYSTERESIS, description="A level the previous week reached (same model version) holds "
        "while the share stays >= (1 - this) x its threshold.")
    calibration_factor: float = Field(
        default=1.5, description="A column drifts beyond max(Evidently's default threshold, this x its largest "
        "score on stationary data: training months against each other, weeks inside the training window).")
    render_html: Literal["auto", "always", "never"] = Field(
        default="auto", description="Evidently HTML report: auto = only for weeks whose decision is not none.")
    sample_size: int = Field(default=5000, description="Rows sampled from each side (keeps a week well under a second).")
    seed: int = Field(default=0, description="Sampling seed: the same week gives the same report.")
    num_method: str | None = Field(
        default=None, description="Evidently test for numeric columns (e.g. wasserstein, ks, psi); "
        "unset: Evidently's choice (K-S up to 1000 reference rows, normed Wasserstein above).")
    cat_method: str | None = Field(
        default=None, description="Evidently test for categorical columns (e.g. jensenshannon, chisquare); unset: Evidently's choice.")


def _week_inputs(warehouse: Warehouse, week):
    """The week's training-like population and its scores (queries.is_candidate); fails when
    scoring has not run for the week."""
    from churn_assets.monitoring.drift_week import read_week

    with warehouse.get_connection() as con:  # read, then release the lock during Evidently
        missing = missing_tables(con, (SCORING_FEATURES_TABLE, SCORES_TABLE))
        if missing:
            raise dg.Failure(f"{missing[0]} does not exist: materialise it for week {week} first.")
        inputs = read_week(con, week)
    if inputs.current.empty or inputs.scores.empty:
        raise dg.Failure(f"no scoring features ({len(inputs.current)}) or scores ({len(inputs.scores)}) for week "
                         f"{week}: materialise scoring/scoring_features and scoring/churn_scores for it first.")
    return inputs


def _calibration(context, warehouse: Warehouse, config: "DriftConfig", version: str, reference, methods):
    from churn_assets.monitoring.drift_week import calibration_for

    calibration = calibration_for(warehouse.get_connection, version, reference, methods, config.calibration_factor,
                                  config.sample_size, config.seed)
    if calibration.fresh:
        weeks = calibration.weeks
        context.log.info(f"calibration: {weeks['found']} stationary weeks ({weeks['built']} built from raw data) "
                         f"of {weeks['in_window']} in the window")
    if calibration.table is None:
        context.log.warning(f"model {version}'s reference has no target_month and no stationary weeks: "
                            "Evidently's default thresholds")
    return calibration


def _run_links(context) -> dict[str, str]:
    return {"dagster_run_id": context.run_id, "dagster_run_url": dagster_run_url(context.run_id)}


def _mlflow_run_url(context, registry: ModelRegistry, version: str) -> str | None:
    """The MLflow page of the run that produced `version` (None, with a warning, when the
    registry cannot say: a link only, the week's verdict stands without it)."""
    from churn_assets.monitoring.dashboard import version_run_id

    try:
        return registry.run_url(version_run_id(registry.client(), version))
    except Exception as exc:  # any store error: MLflow raises several kinds
        context.log.warning(f"no MLflow run link for model version {version}: {type(exc).__name__}: {exc}")
        return None


def _drift_snapshot(context, warehouse: Warehouse, storage: Storage, registry: ModelRegistry, config: "DriftConfig",
                    week, report, result, prediction, reference_scores, scores) -> dict:
    """The week's snapshot into the Evidently workspace (replacing an earlier one of the week);
    the links to it and to the scoring version's MLflow run, for the metadata."""
    from churn_assets.monitoring.dashboard import log_drift_week

    with warehouse.get_connection() as con:
        buckets = week_bucket_counts(con, week)
    row = report.iloc[0]
    mlflow_url = _mlflow_run_url(context, registry, str(row["model_version"]))
    snapshot = log_drift_week(
        storage.paths.evidently, week, row, result.columns, prediction, reference_scores, scores, buckets,
        retrain_at=config.retrain_at, retune_at=config.retune_at, sample_size=config.sample_size, seed=config.seed,
        links={**_run_links(context), "mlflow_run_url": mlflow_url})
    return link_metadata(snapshot, mlflow_url)


@dg.asset(
    key=keys.DRIFT_REPORT,
    partitions_def=weekly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "evidently"},
    pool="duckdb_warehouse",
    deps=[keys.SCORING_FEATURES, keys.CHURN_SCORES, keys.PRODUCTION_MODEL],
    description=(
        "Evidently data drift of the week's scoring population against the training window of the "
        "model that scored it: per-column tests against thresholds calibrated on that window's "
        "stationary data, weighted by the model's gain. Writes monitoring.drift_reports / drift_columns "
        "(and the HTML report when the week asks for action) and decides none / retrain / retune once "
        "a level held two consecutive weeks."
    ),
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, warehouse: Warehouse,
                 registry: ModelRegistry, storage: Storage) -> dg.MaterializeResult:
    from churn_assets.monitoring import drift_week as steps  # Evidently: imported only when run
    from churn_assets.monitoring.drift import prediction_drift

    validate_thresholds(config.retrain_at, config.retune_at, config.hysteresis)
    week = week_of(context.partition_key)
    inputs = _week_inputs(warehouse, week)
    version, scores, versions = steps.pick_version(inputs.scores)
    if len(versions) > 1:
        context.log.warning(f"week {week} has scores from versions {versions}; using {version}")
    evidence = registry.training_evidence(version)
    reference = evidence.reference_sample
    weights, weight_source = steps.weights_for(evidence.feature_importance)
    if weight_source != "gain":
        context.log.warning(f"model {version} logged no feature importance: every column weighs the same")
    methods = steps.methods_for(reference, config.num_method, config.cat_method, config.sample_size, config.seed)
    calibration = _calibration(context, warehouse, config, version, reference, methods)
    result = steps.feature_drift(reference, inputs.current, methods, calibration, weights, config.sample_size,
                                 config.seed)
    prediction = prediction_drift(evidence.validation_predictions, scores, sample_size=config.sample_size,
                                  seed=config.seed, method=config.num_method)  # reported, never decides
    previous_level = previous_level_for(inputs.previous, version)
    level, decision = drift_policy(result.drift_share, previous_level, config.retrain_at, config.retune_at,
                                   config.hysteresis)
    html = steps.render_or_remove(config.render_html, decision, steps.drift_html_path(storage.reports, week), reference,
                                  inputs.current, result, config.sample_size, config.seed)
    report = steps.report_row(week, version, result, level, decision, html, previous_level, weight_source,
                              calibration.source)
    with warehouse.get_connection() as con:
        steps.write_week(con, week, report, steps.column_rows(week, result, prediction))
        publish(con, {steps.DRIFT_REPORTS_TABLE: week, steps.DRIFT_COLUMNS_TABLE: week}, storage.paths)
        calibration.store_if_fresh(con)
    context.log.info(drift_summary(week, result, report))
    links = _drift_snapshot(context, warehouse, storage, registry, config, week, report, result, prediction,
                            evidence.validation_predictions, scores)
    return dg.MaterializeResult(metadata={**drift_metadata(
        report, result, prediction, calibration, config, scored_rows=inputs.scored_rows,
        compared_rows=len(inputs.current), trained_through=registry.trained_through(version),
        production_trained_through=registry.production_trained_through(), trainable=inputs.trainable), **links})


# ---------------------------------------------------------------- realised performance


class PerformanceConfig(dg.Config):
    a_threshold: float = Field(default=A_THRESHOLD, description="Bucket A cut-off for recall_a / precision_a.")
    auc_margin: float = Field(
        default=0.02, description="Retrain when the bootstrap upper bound of the realised first-score AUC "
        "is below the version's validation AUC - this.")
    relative_log_loss_margin: float = Field(
        default=0.05, description="Retrain when the realised first-score log loss / base-rate log loss "
        "exceeds the version's validation one + this.")
    min_lead_days: int = Field(default=21, description="A member's first score counts for the headline only "
                               "with at least this many days before its expiry.")
    n_bootstrap: int = Field(default=1000, description="Bootstrap resamples for the AUC interval.")
    seed: int = Field(default=0, description="Bootstrap seed: the same month gives the same interval.")


def _validation(registry: ModelRegistry, versions) -> dict[str, dict[str, float]]:
    """{version: validation_quality}: the logged metrics and hold-out scores only (no reference download)."""
    from churn_assets.monitoring.performance import validation_quality

    return {v: validation_quality(registry.validation_metrics(v), registry.validation_scores(v)) for v in versions}


def _performance_snapshot(context, warehouse: Warehouse, storage: Storage, month, verdict) -> dict:
    """The month's snapshot (with the retention experiment's month row once it exists) into the
    Evidently workspace, replacing an earlier one of the month; its links for the metadata."""
    from churn_assets.marketing.queries import read_month_summaries
    from churn_assets.monitoring.dashboard import log_performance_month, month_row

    with warehouse.get_connection() as con:
        retention = month_row(read_month_summaries(con), month)
    snapshot = log_performance_month(storage.paths.evidently, month, verdict.perf, verdict.decision, verdict.version,
                                     retention, links=_run_links(context))
    return link_metadata(snapshot)


@dg.asset(
    key=keys.MODEL_PERFORMANCE,
    partitions_def=monthly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "sklearn"},
    pool="duckdb_warehouse",
    deps=[keys.LABELS, keys.CHURN_SCORES],
    output_required=False,
    description=(
        "Realised quality of the target month's scores at their lead, once its labels are final "
        "(before that nothing is written and the partition stays empty): per model "
        "version and lead band, the headline `first_score` (each member's first score of the expiry "
        "cycle, >= 21 days ahead) and the bands 21-30 / 14-20 / 7-13 / 0-6 days. Retrain when the "
        "headline's AUC interval or its log loss relative to the base rate fell behind validation."
    ),
)
def model_performance(
    context: dg.AssetExecutionContext, config: PerformanceConfig, warehouse: Warehouse, registry: ModelRegistry,
    storage: Storage,
) -> Iterator[dg.MaterializeResult]:
    from churn_assets.monitoring import performance as pf  # scikit-learn: imported only when run

    with warehouse.get_connection() as con:
        if (month := final_month_or_none(context, con)) is None:
            return
        if missing_tables(con, (LABELS_TABLE, SCORES_TABLE)):
            context.log.warning(f"{LABELS_TABLE} or {SCORES_TABLE} missing: nothing to evaluate")
            return
        pairs = pf.lead_pairs(con, month, min_lead_days=config.min_lead_days)
        n_labels, trainable = label_count(con, month), trainable_through(con)
    if pairs.empty:
        context.log.warning(f"no scored candidates among the labels of {month:%Y-%m}: nothing written")
        return
    perf = pf.performance_by_band(pairs, config.a_threshold, config.n_bootstrap, config.seed)
    verdict = pf.judge_month(perf, pairs, _validation(registry, perf["model_version"].unique()), config.auc_margin,
                             config.relative_log_loss_margin)
    with warehouse.get_connection() as con:
        if lacking := pf.write_performance(con, verdict.perf, month):
            context.log.warning(f"{pf.PERFORMANCE_TABLE} lacked {lacking}: recreated; re-materialise earlier "
                                "months to refill it")
        publish(con, {pf.PERFORMANCE_TABLE: month}, storage.paths)
    if verdict.headline.empty:
        context.log.warning(f"{month:%Y-%m}: no member was first scored >= {config.min_lead_days} days ahead "
                            f"({verdict.late_first_scores} late first scores): no verdict")
    context.log.info(performance_summary(month, verdict))
    links = _performance_snapshot(context, warehouse, storage, month, verdict)
    yield dg.MaterializeResult(metadata={**performance_metadata(
        verdict, pairs, n_labels, config, trained_through=registry.trained_through(verdict.version),
        production_trained_through=registry.production_trained_through(), trainable=trainable), **links})


monitoring_assets = [drift_report, model_performance]
