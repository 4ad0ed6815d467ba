"""Monitoring assets: weekly Evidently drift against the model's own training
reference, and monthly realised quality once labels are final.

Both record a `decision` ('none' / 'retrain' / 'retune') in their
materialisation metadata; drift_retrain_sensor (sensors.py) turns those into runs.
Evidently (~10 s) and MLflow (~5 s) are imported inside the assets so the code
server loads the definitions quickly. (No `from __future__ import annotations`:
Dagster reads the Config annotations at definition time.)
"""
from collections.abc import Iterator
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from churn_assets.features.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS
from churn_assets.features.labels import final_on, labels_final
from churn_assets.partitions import month_of, monthly_partitions, week_of, weekly_partitions
from churn_assets.resources import Warehouse
from churn_assets.settings import paths_from_env
from churn_assets.warehouse import frame_metadata, replace_partition, table_exists

from .policy import (
    DEFAULT_HYSTERESIS, DEFAULT_RETRAIN_AT, DEFAULT_RETUNE_AT, drift_policy, performance_decision,
    previous_level_for, validate_thresholds,
)

DRIFT_REPORT_KEY = dg.AssetKey(["monitoring", "drift_report"])
MODEL_PERFORMANCE_KEY = dg.AssetKey(["monitoring", "model_performance"])
SCORING_FEATURES_KEY = dg.AssetKey(["scoring", "scoring_features"])
CHURN_SCORES_KEY = dg.AssetKey(["scoring", "churn_scores"])
PRODUCTION_MODEL_KEY = dg.AssetKey(["ml", "production_model"])
LABELS_KEY = dg.AssetKey(["features", "labels"])

MODEL_NAME = "churn_model"
DRIFT_REPORTS_TABLE = "monitoring.drift_reports"
DRIFT_COLUMNS_TABLE = "monitoring.drift_columns"
PERFORMANCE_TABLE = "monitoring.model_performance"
TOP_COLUMNS = 10


# ---------------------------------------------------------------- MLflow look-ups


def _mlflow_client():
    from mlflow import MlflowClient

    uri = paths_from_env().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def load_evidence(model_version: str):
    """The model domain's TrainingEvidence of `churn_model` version `model_version`: the
    reference sample (its training window, target_month included), validation scores,
    feature importance and version tags."""
    from churn_assets.model.registry import training_evidence  # MLflow: imported only when run

    return training_evidence(_mlflow_client()[0], model_version)


def production_trained_through() -> str:
    """The newest labelled month the version behind @production learned ('' when none):
    the sensor requests a training run only when newer final labels exist."""
    from churn_assets.model.registry import PRODUCTION, alias_version, trained_through

    client = _mlflow_client()[0]
    version = alias_version(client, PRODUCTION)
    return trained_through(client.get_model_version(MODEL_NAME, version).tags) if version else ""


# ---------------------------------------------------------------- drift


# The training population's latest transaction is in the month before as_of (official rule).
CANDIDATE_MAX_DAYS_SINCE_TXN = 31


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


def _top_columns_markdown(columns: pd.DataFrame) -> str:
    top = columns.head(TOP_COLUMNS)[["column_name", "weight", "method", "score", "threshold", "drifted"]]
    return top.to_markdown(index=False, floatfmt=".4g") if len(top) else "_no columns_"


def _candidates_of_week(con, week) -> pd.DataFrame:
    """The week's scoring features of the training-like population (see drift_report)."""
    cols = ", ".join(FEATURE_COLUMNS)
    return con.execute(f"SELECT {cols} FROM scoring.scoring_features WHERE week_start = ? AND days_since_last_txn <= ?",
                       [week, CANDIDATE_MAX_DAYS_SINCE_TXN]).df()


def _stationary_weeks(con, weeks: list, log) -> dict:
    """{week: training-like scoring population} for weeks inside the training window: read
    from scoring.scoring_features, or built from raw data (rows dated before the week only)
    for weeks nobody scored, e.g. those before the first model."""
    from churn_assets.scoring.assets import build_scoring_features

    frames, built = {}, 0
    scored = set()
    if weeks and table_exists(con, "scoring.scoring_features"):
        scored = {r[0] for r in con.execute("SELECT DISTINCT week_start FROM scoring.scoring_features "
                                            "WHERE week_start BETWEEN ? AND ?", [min(weeks), max(weeks)]).fetchall()}
    can_build = table_exists(con, "raw.transactions") and table_exists(con, "raw.members")
    for week in weeks:
        if week in scored:
            frames[week] = _candidates_of_week(con, week)
        elif can_build:
            features = build_scoring_features(con, week)
            frames[week] = features.loc[features["days_since_last_txn"] <= CANDIDATE_MAX_DAYS_SINCE_TXN, FEATURE_COLUMNS]
            built += 1
    log.info(f"calibration: {len(frames)} stationary weeks ({built} built from raw data) of {len(weeks)} in the window")
    return {w: f for w, f in frames.items() if len(f)}


@dg.asset(
    key=DRIFT_REPORT_KEY,
    partitions_def=weekly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "evidently"},
    pool="duckdb_warehouse",
    deps=[SCORING_FEATURES_KEY, CHURN_SCORES_KEY, PRODUCTION_MODEL_KEY],
    description=(
        "Evidently data drift of the week's scoring population against the training window of the "
        "model that scored it: per-column tests against thresholds calibrated on that window's "
        "stationary data, weighted by the model's gain. Writes monitoring.drift_reports / drift_columns "
        "(and the HTML report when the week asks for action) and decides none / retrain / retune once "
        "a level held two consecutive weeks."
    ),
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    from churn_assets.model.data import newest_trainable_month
    from churn_assets.model.registry import trained_through

    from .drift import (
        add_missing_columns, cached_thresholds, calibrate_thresholds, compute_drift, feature_weights,
        prediction_drift, previous_week_row, reference_months, render_drift_html, render_wanted, resolve_methods,
        store_thresholds, threshold_map, window_weeks,
    )

    validate_thresholds(config.retrain_at, config.retune_at, config.hysteresis)
    week = week_of(context.partition_key)
    with warehouse.get_connection() as con:  # read, then release the lock during Evidently
        for table in ("scoring.scoring_features", "scoring.churn_scores"):
            if not table_exists(con, table):
                raise dg.Failure(f"{table} does not exist: materialise it for week {week} first.")
        # Like with like: the model's training rows are the official rule's candidates, whose
        # latest transaction lies in the month before as_of. Members on long plans bought a
        # year ago are scored too, but are not what the reference describes, so they are left
        # out of the comparison (else their plan length and price read as drift every week).
        current = _candidates_of_week(con, week)
        scores = con.execute(
            "SELECT CAST(s.model_version AS VARCHAR) AS model_version, s.churn_probability "
            "FROM scoring.churn_scores s JOIN scoring.scoring_features f USING (week_start, msno) "
            "WHERE s.week_start = ? AND f.days_since_last_txn <= ?", [week, CANDIDATE_MAX_DAYS_SINCE_TXN]).df()
        scored_rows = con.execute("SELECT count(*) FROM scoring.churn_scores WHERE week_start = ?", [week]).fetchone()[0]
        previous = previous_week_row(con, week, DRIFT_REPORTS_TABLE)
        trainable = newest_trainable_month(con, 3)
    if current.empty or scores.empty:
        raise dg.Failure(f"no scoring features ({len(current)}) or scores ({len(scores)}) for week {week}: "
                         "materialise scoring/scoring_features and scoring/churn_scores for it first.")
    versions = scores["model_version"].value_counts()
    version = str(versions.index[0])
    if len(versions) > 1:  # re-scored mid-week: compare against the model most rows carry
        context.log.warning(f"week {week} has scores from versions {versions.to_dict()}; using {version}")
        scores = scores[scores["model_version"] == version]

    evidence = load_evidence(version)
    reference = evidence.reference_sample
    weights, weight_source = feature_weights(evidence.feature_importance, FEATURE_COLUMNS)
    if weight_source != "gain":
        context.log.warning(f"model {version} logged no feature importance: every column weighs the same")
    methods = resolve_methods(reference, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, config.num_method, config.cat_method,
                              config.sample_size, config.seed)
    # Thresholds depend on the version's reference only: calibrated once, then read back.
    with warehouse.get_connection() as con:
        calibration = cached_thresholds(con, version, methods, config.calibration_factor, config.sample_size)
        fresh = calibration is None
        stationary = _stationary_weeks(con, window_weeks(reference_months(reference)), context.log) if fresh else {}
    if fresh:
        calibration = calibrate_thresholds(reference, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, methods,
                                           config.calibration_factor, config.sample_size, config.seed,
                                           stationary_weeks=stationary)
    threshold_source = "calibrated" if calibration is not None else "evidently defaults"
    if calibration is None:
        context.log.warning(f"model {version}'s reference has no target_month and no stationary weeks: "
                            "Evidently's default thresholds")

    result = compute_drift(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, sample_size=config.sample_size,
                           seed=config.seed, methods=methods, thresholds=threshold_map(calibration), weights=weights)
    prediction = prediction_drift(evidence.validation_predictions, scores, sample_size=config.sample_size,
                                  seed=config.seed, method=config.num_method)  # reported, never decides
    previous_level = previous_level_for(previous, version)
    level, decision = drift_policy(result.drift_share, previous_level, config.retrain_at, config.retune_at,
                                   config.hysteresis)

    html_path = paths_from_env().reports / "drift" / f"{week.isoformat()}.html"
    if render_wanted(config.render_html, decision):
        if render_drift_html(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, result, html_path,
                             config.sample_size, config.seed) is None:
            html_path = None
    else:
        html_path.unlink(missing_ok=True)  # a re-run must not leave an earlier verdict's page behind
        html_path = None

    report_row = pd.DataFrame([{
        "week_start": week, "model_version": version,
        "reference_rows": result.reference_rows, "current_rows": result.current_rows,
        "n_columns": result.n_columns, "n_drifted": result.n_drifted, "drift_share": result.drift_share,
        "column_share": result.column_share, "level": level, "decision": decision,
        "report_path": str(html_path or ""), "previous_level": previous_level or "",
        "weight_source": weight_source, "threshold_source": threshold_source,
    }])
    # the prediction row is reported beside the features, kind tells them apart
    columns = pd.concat([
        result.columns.assign(kind="feature"),
        pd.DataFrame([prediction]).assign(kind="prediction"),
    ], ignore_index=True)
    columns.insert(0, "week_start", week)
    columns = columns[["week_start", "column_name", "method", "score", "drifted", "threshold", "kind",
                       "weight", "default_threshold"]]
    with warehouse.get_connection() as con:
        for table, frame in ((DRIFT_REPORTS_TABLE, report_row), (DRIFT_COLUMNS_TABLE, columns)):
            add_missing_columns(con, table, frame)  # tables written before these columns existed
            replace_partition(con, table, frame, "week_start", week)
        if fresh and calibration is not None:
            store_thresholds(con, version, calibration, config.calibration_factor, config.sample_size)

    drifted = result.columns[result.columns["drifted"]]
    top = [{"column": r.column_name, "weight": round(float(r.weight), 4), "score": round(float(r.score), 4),
            "threshold": round(float(r.threshold), 4)} for r in drifted.head(TOP_COLUMNS).itertuples()]
    raised = calibration[calibration["threshold"] > calibration["default_threshold"]] if calibration is not None else []
    context.log.info(f"week {week}: drift share {result.drift_share:.3f} (gain-weighted; {result.n_drifted}/"
                     f"{result.n_columns} columns) against model {version} -> level {level}, previous "
                     f"{previous_level or '-'}, decision {decision}")
    return dg.MaterializeResult(metadata=frame_metadata(report_row, extra={
        "decision": dg.MetadataValue.text(decision),
        "level": dg.MetadataValue.text(level),
        "previous_level": dg.MetadataValue.text(previous_level or ""),
        "drift_share": dg.MetadataValue.float(float(result.drift_share)),
        "column_share": dg.MetadataValue.float(float(result.column_share)),
        "n_drifted": dg.MetadataValue.int(result.n_drifted),
        "model_version": dg.MetadataValue.text(version),
        "model_trained_through": dg.MetadataValue.text(trained_through(evidence.tags)),
        "production_trained_through": dg.MetadataValue.text(production_trained_through()),
        "trainable_through": dg.MetadataValue.text(trainable.isoformat() if trainable else ""),
        "scored_rows": dg.MetadataValue.int(int(scored_rows)),
        "compared_rows": dg.MetadataValue.int(len(current)),  # the training-like population
        "prediction_drift_score": dg.MetadataValue.float(float(prediction["score"])),
        "prediction_drift_method": dg.MetadataValue.text(str(prediction["method"])),
        "prediction_drifted": dg.MetadataValue.bool(bool(prediction["drifted"])),
        "top_drifted": dg.MetadataValue.json(top),
        "top_drifted_columns": dg.MetadataValue.md(_top_columns_markdown(result.columns)),
        "report_path": dg.MetadataValue.path(str(html_path or "")),
        "weight_source": dg.MetadataValue.text(weight_source),
        "thresholds": dg.MetadataValue.json({
            "retrain_at": config.retrain_at, "retune_at": config.retune_at, "hysteresis": config.hysteresis,
            "source": threshold_source, "calibration_factor": config.calibration_factor,
            "raised": {r.column_name: round(float(r.threshold), 4) for r in raised.itertuples()} if len(raised) else {},
            "stationary_months": int(calibration["months"].max()) if calibration is not None else 0,
            "stationary_weeks": int(calibration["weeks"].max()) if calibration is not None else 0,
        }),
        # below ~1000 rows Evidently uses p-value tests: ~5% of stable columns flag by chance
        "small_sample": dg.MetadataValue.bool(min(result.reference_rows, result.current_rows) <= 1000),
        "retrain_at": dg.MetadataValue.float(config.retrain_at),
        "retune_at": dg.MetadataValue.float(config.retune_at),
    }))


# ---------------------------------------------------------------- realised performance


class PerformanceConfig(dg.Config):
    a_threshold: float = Field(default=0.7, description="Bucket A cut-off for recall_a / precision_a.")
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


def _validation_of(evidence) -> dict[str, float]:
    """{auc, log_loss, relative_log_loss} of a version's validation month (NaN when not logged)."""
    from .performance import relative_log_loss

    preds = evidence.validation_predictions
    has_preds = preds is not None and {"is_churn", "churn_probability"} <= set(preds.columns)
    return {
        "auc": float(evidence.metrics.get("auc", float("nan"))),
        "log_loss": float(evidence.metrics.get("log_loss", float("nan"))),
        "relative_log_loss": relative_log_loss(preds["is_churn"], preds["churn_probability"])
        if has_preds else float("nan"),
    }


@dg.asset(
    key=MODEL_PERFORMANCE_KEY,
    partitions_def=monthly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "sklearn"},
    pool="duckdb_warehouse",
    deps=[LABELS_KEY, CHURN_SCORES_KEY],
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
    context: dg.AssetExecutionContext, config: PerformanceConfig, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    from churn_assets.model.data import newest_trainable_month
    from churn_assets.model.registry import trained_through, training_evidence  # MLflow: imported only when run

    from .performance import (
        FIRST_SCORE, bands_markdown, headline_version, late_first_scores, lead_pairs, performance_by_band,
    )

    month = month_of(context.partition_key)
    with warehouse.get_connection() as con:
        # Not an error: the month is simply not judgeable yet. No materialisation
        # is recorded, so the partition stays missing and the sensor sees nothing.
        if not labels_final(con, month):
            context.log.warning(f"labels of {month:%Y-%m} are not final until the data reaches "
                                f"{final_on(month).isoformat()}: nothing written")
            return
        if not (table_exists(con, "features.labels") and table_exists(con, "scoring.churn_scores")):
            context.log.warning("features.labels or scoring.churn_scores missing: nothing to evaluate")
            return
        pairs = lead_pairs(con, month, min_lead_days=config.min_lead_days)
        n_labels = con.execute("SELECT count(*) FROM features.labels WHERE target_month = ?", [month]).fetchone()[0]
        trainable = newest_trainable_month(con, 3)
    if pairs.empty:
        context.log.warning(f"no scored candidates among the labels of {month:%Y-%m}: nothing written")
        return

    perf = performance_by_band(pairs, config.a_threshold, config.n_bootstrap, config.seed)
    client = _mlflow_client()[0]
    evidence = {v: training_evidence(client, v) for v in perf["model_version"].unique()}
    validation = {v: _validation_of(e) for v, e in evidence.items()}
    for column in ("auc", "log_loss", "relative_log_loss"):
        perf[f"valid_{column}"] = perf["model_version"].map(lambda v, c=column: validation[v][c])
    headline = perf["lead_band"] == FIRST_SCORE
    # the alarm reads the headline only: short leads see the decision and would flatter the model
    perf["decision"] = pd.Series(pd.NA, index=perf.index, dtype="string")
    perf.loc[headline, "decision"] = [
        performance_decision(row, validation[row["model_version"]], config.auc_margin, config.relative_log_loss_margin)
        for row in perf[headline].to_dict("records")
    ]  # one row per model version
    # The month's verdict is that of the version that produced most headline scores.
    version = headline_version(pairs) or str(pairs["model_version"].value_counts().index[0])
    rows = perf[headline & (perf["model_version"] == version)]
    current = rows.iloc[0] if len(rows) else pd.Series(dtype=object)
    decision = str(current.get("decision", "none")) if len(rows) else "none"
    late = int(late_first_scores(pairs).sum())
    learned = trained_through(evidence[version].tags) if version in evidence else ""

    def number(name: str) -> float:
        value = current.get(name, float("nan"))
        return float("nan") if pd.isna(value) else float(value)

    with warehouse.get_connection() as con:
        if table_exists(con, PERFORMANCE_TABLE):  # a table of the one-row-per-version era cannot take bands
            existing = {r[0] for r in con.execute(f"DESCRIBE {PERFORMANCE_TABLE}").fetchall()}
            if not set(perf.columns) <= existing:
                context.log.warning(f"{PERFORMANCE_TABLE} lacks {sorted(set(perf.columns) - existing)}: "
                                    "recreated; re-materialise earlier months to refill it")
                con.execute(f"DROP TABLE {PERFORMANCE_TABLE}")
        replace_partition(con, PERFORMANCE_TABLE, perf, "target_month", month)

    if not len(rows):
        context.log.warning(f"{month:%Y-%m}: no member was first scored >= {config.min_lead_days} days ahead "
                            f"({late} late first scores): no verdict")
    context.log.info(f"{month:%Y-%m}: model {version} first-score AUC {number('auc'):.4f} "
                     f"[{number('auc_ci_low'):.4f}, {number('auc_ci_high'):.4f}] (validation {number('valid_auc'):.4f}), "
                     f"relative log loss {number('relative_log_loss'):.4f} "
                     f"(validation {number('valid_relative_log_loss'):.4f}) -> {decision}")
    yield dg.MaterializeResult(metadata=frame_metadata(perf, extra={
        "decision": dg.MetadataValue.text(decision),
        "model_version": dg.MetadataValue.text(version),
        **{name: dg.MetadataValue.float(number(name)) for name in (
            "auc", "auc_ci_low", "auc_ci_high", "valid_auc", "log_loss", "valid_log_loss", "relative_log_loss",
            "valid_relative_log_loss", "base_log_loss", "pr_auc", "churn_rate")},
        "n_scored": dg.MetadataValue.int(int(current.get("n_scored", 0)) if len(rows) else 0),  # the headline's
        "late_first_scores": dg.MetadataValue.int(late),
        "scored_share_of_candidates": dg.MetadataValue.float(pairs["msno"].nunique() / n_labels if n_labels else 0.0),
        "lead_bands": dg.MetadataValue.md(bands_markdown(perf)),
        "model_trained_through": dg.MetadataValue.text(learned),
        "production_trained_through": dg.MetadataValue.text(production_trained_through()),
        "trainable_through": dg.MetadataValue.text(trainable.isoformat() if trainable else ""),
        "auc_margin": dg.MetadataValue.float(config.auc_margin),
        "relative_log_loss_margin": dg.MetadataValue.float(config.relative_log_loss_margin),
    }))


monitoring_assets = [drift_report, model_performance]

performance_job = dg.define_asset_job(
    "performance_job",
    selection=dg.AssetSelection.assets(model_performance),
    partitions_def=monthly_partitions,
    description="Realised model performance for a target month once its labels are final.",
)
