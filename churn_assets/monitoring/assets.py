"""Monitoring assets: weekly Evidently drift against the model's own training
reference, and monthly realised quality once labels are final.

Both record a `decision` ('none' / 'retrain' / 'retune') in their
materialisation metadata; drift_retrain_sensor (sensors.py) turns those into runs.
Evidently (~10 s) and MLflow (~5 s) are imported inside the assets so the code
server loads the definitions quickly. (No `from __future__ import annotations`:
Dagster reads the Config annotations at definition time.)
"""
from collections.abc import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from churn_assets.features.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS
from churn_assets.features.labels import final_after, labels_final
from churn_assets.partitions import month_of, monthly_partitions, week_of, weekly_partitions
from churn_assets.resources import Warehouse
from churn_assets.settings import paths_from_env
from churn_assets.warehouse import frame_metadata, replace_partition, table_exists

from .policy import decide, performance_decision, validate_thresholds

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


def load_reference(model_version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training reference sample and validation scores logged with the run
    that produced `churn_model` version `model_version` (the model domain's evidence)."""
    from churn_assets.model.registry import training_evidence  # MLflow: imported only when run

    evidence = training_evidence(_mlflow_client()[0], model_version)
    return evidence.reference_sample, evidence.validation_predictions


def validation_metrics(model_version: str) -> dict[str, float]:
    """{auc, log_loss} from the MLflow run of `model_version` (metrics valid_auc,
    valid_log_loss); missing metrics are left out."""
    client, _ = _mlflow_client()
    run_id = client.get_model_version(MODEL_NAME, str(model_version)).run_id
    logged = client.get_run(run_id).data.metrics
    return {name: float(logged[f"valid_{name}"]) for name in ("auc", "log_loss") if f"valid_{name}" in logged}


# ---------------------------------------------------------------- drift


# The training population's latest transaction is in the month before as_of (official rule).
CANDIDATE_MAX_DAYS_SINCE_TXN = 31

class DriftConfig(dg.Config):
    retrain_at: float = Field(default=0.05, description="Drift share from which the production recipe is refit.")
    retune_at: float = Field(default=0.10, description="Drift share from which hyper-parameters are searched again.")
    sample_size: int = Field(default=5000, description="Rows sampled from each side (keeps a report to seconds).")
    seed: int = Field(default=0, description="Sampling seed: the same week gives the same report.")
    num_method: str | None = Field(
        default=None, description="Evidently test for numeric columns (e.g. wasserstein, ks, psi); "
        "unset: Evidently's choice (K-S up to 1000 rows, normed Wasserstein above).")
    cat_method: str | None = Field(
        default=None, description="Evidently test for categorical columns (e.g. jensenshannon, chisquare); unset: Evidently's choice.")


def _top_columns_markdown(columns: pd.DataFrame) -> str:
    top = columns.head(TOP_COLUMNS)
    return top.to_markdown(index=False, floatfmt=".4g") if len(top) else "_no columns_"


@dg.asset(
    key=DRIFT_REPORT_KEY,
    partitions_def=weekly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "evidently"},
    pool="duckdb_warehouse",
    deps=[SCORING_FEATURES_KEY, CHURN_SCORES_KEY, PRODUCTION_MODEL_KEY],
    description=(
        "Evidently data drift of the week's scoring population against the training reference of the "
        "model that scored it; writes monitoring.drift_reports / drift_columns and the HTML report, "
        "and decides none / retrain / retune."
    ),
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    from .drift import prediction_drift, compute_drift

    validate_thresholds(config.retrain_at, config.retune_at)
    week = week_of(context.partition_key)
    cols = ", ".join(FEATURE_COLUMNS)
    with warehouse.get_connection() as con:  # read, then release the lock during Evidently
        for table in ("scoring.scoring_features", "scoring.churn_scores"):
            if not table_exists(con, table):
                raise dg.Failure(f"{table} does not exist: materialise it for week {week} first.")
        # Like with like: the model's training rows are the official rule's candidates, whose
        # latest transaction lies in the month before as_of. Members on long plans bought a
        # year ago are scored too, but are not what the reference describes, so they are left
        # out of the comparison (else their plan length and price read as drift every week).
        current = con.execute(
            f"SELECT {cols} FROM scoring.scoring_features WHERE week_start = ? AND days_since_last_txn <= ?",
            [week, CANDIDATE_MAX_DAYS_SINCE_TXN]).df()
        scores = con.execute(
            "SELECT CAST(s.model_version AS VARCHAR) AS model_version, s.churn_probability "
            "FROM scoring.churn_scores s JOIN scoring.scoring_features f USING (week_start, msno) "
            "WHERE s.week_start = ? AND f.days_since_last_txn <= ?", [week, CANDIDATE_MAX_DAYS_SINCE_TXN]).df()
        scored_rows = con.execute("SELECT count(*) FROM scoring.churn_scores WHERE week_start = ?", [week]).fetchone()[0]
    if current.empty or scores.empty:
        raise dg.Failure(f"no scoring features ({len(current)}) or scores ({len(scores)}) for week {week}: "
                         "materialise scoring/scoring_features and scoring/churn_scores for it first.")
    versions = scores["model_version"].value_counts()
    version = str(versions.index[0])
    if len(versions) > 1:  # re-scored mid-week: compare against the model most rows carry
        context.log.warning(f"week {week} has scores from versions {versions.to_dict()}; using {version}")
        scores = scores[scores["model_version"] == version]

    reference, reference_scores = load_reference(version)
    html_path = paths_from_env().reports / "drift" / f"{week.isoformat()}.html"
    result = compute_drift(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS,
                           sample_size=config.sample_size, seed=config.seed, html_path=html_path,
                           num_method=config.num_method, cat_method=config.cat_method)
    prediction = prediction_drift(reference_scores, scores, sample_size=config.sample_size, seed=config.seed,
                                  method=config.num_method)
    decision = decide(result.drift_share, config.retrain_at, config.retune_at)

    report_row = pd.DataFrame([{
        "week_start": week, "model_version": version,
        "reference_rows": result.reference_rows, "current_rows": result.current_rows,
        "n_columns": result.n_columns, "n_drifted": result.n_drifted, "drift_share": result.drift_share,
        "decision": decision, "report_path": str(result.html_path or ""),
    }])
    # the prediction row is reported beside the features, kind tells them apart
    columns = pd.concat([
        result.columns.assign(kind="feature"),
        pd.DataFrame([prediction]).assign(kind="prediction"),
    ], ignore_index=True)
    columns.insert(0, "week_start", week)
    columns = columns[["week_start", "column_name", "method", "score", "drifted", "threshold", "kind"]]
    with warehouse.get_connection() as con:
        replace_partition(con, DRIFT_REPORTS_TABLE, report_row, "week_start", week)
        replace_partition(con, DRIFT_COLUMNS_TABLE, columns, "week_start", week)

    context.log.info(f"week {week}: {result.n_drifted}/{result.n_columns} columns drifted "
                     f"(share {result.drift_share:.3f}) against model {version} -> {decision}")
    return dg.MaterializeResult(metadata=frame_metadata(report_row, extra={
        "drift_share": dg.MetadataValue.float(float(result.drift_share)),
        "n_drifted": dg.MetadataValue.int(result.n_drifted),
        "decision": dg.MetadataValue.text(decision),
        "model_version": dg.MetadataValue.text(version),
        "scored_rows": dg.MetadataValue.int(int(scored_rows)),
        "compared_rows": dg.MetadataValue.int(len(current)),  # the training-like population
        "prediction_drift_score": dg.MetadataValue.float(float(prediction["score"])),
        "prediction_drift_method": dg.MetadataValue.text(str(prediction["method"])),
        "prediction_drifted": dg.MetadataValue.bool(bool(prediction["drifted"])),
        "top_drifted_columns": dg.MetadataValue.md(_top_columns_markdown(result.columns)),
        "report_path": dg.MetadataValue.path(str(result.html_path or "")),
        # below ~1000 rows Evidently uses p-value tests: ~5% of stable columns flag by chance
        "small_sample": dg.MetadataValue.bool(min(result.reference_rows, result.current_rows) <= 1000),
        "retrain_at": dg.MetadataValue.float(config.retrain_at),
        "retune_at": dg.MetadataValue.float(config.retune_at),
    }))


# ---------------------------------------------------------------- realised performance


class PerformanceConfig(dg.Config):
    a_threshold: float = Field(default=0.7, description="Bucket A cut-off for recall_a / precision_a.")
    auc_margin: float = Field(default=0.05, description="Retrain when realised AUC < validation AUC - this.")
    log_loss_margin: float = Field(default=0.05, description="Retrain when realised log loss > validation log loss + this.")


@dg.asset(
    key=MODEL_PERFORMANCE_KEY,
    partitions_def=monthly_partitions,
    group_name="monitoring",
    kinds={"duckdb", "sklearn"},
    pool="duckdb_warehouse",
    deps=[LABELS_KEY, CHURN_SCORES_KEY],
    output_required=False,
    description=(
        "Realised AUC / PR-AUC / log loss / bucket-A recall and precision of the scores given before "
        "each expiry of the target month, per model version, once that month's labels are final "
        "(month+1 ingested; before that nothing is written and the partition stays empty). "
        "Concept drift against the version's own validation metrics -> decision none / retrain."
    ),
)
def model_performance(
    context: dg.AssetExecutionContext, config: PerformanceConfig, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    from .performance import performance_by_version, score_label_pairs

    month = month_of(context.partition_key)
    with warehouse.get_connection() as con:
        # Not an error: the month is simply not judgeable yet. No materialisation
        # is recorded, so the partition stays missing and the sensor sees nothing.
        if not labels_final(con, month):
            context.log.warning(f"labels of {month:%Y-%m} are not final until raw/transactions "
                                f"{final_after(month).isoformat()} is ingested: nothing written")
            return
        if not (table_exists(con, "features.labels") and table_exists(con, "scoring.churn_scores")):
            context.log.warning("features.labels or scoring.churn_scores missing: nothing to evaluate")
            return
        pairs = score_label_pairs(con, month)
        n_labels = con.execute("SELECT count(*) FROM features.labels WHERE target_month = ?", [month]).fetchone()[0]
    if pairs.empty:
        context.log.warning(f"no scored candidates among the labels of {month:%Y-%m}: nothing written")
        return

    perf = performance_by_version(pairs, config.a_threshold)
    validation = {v: validation_metrics(v) for v in perf["model_version"]}
    perf["valid_auc"] = [validation[v].get("auc", float("nan")) for v in perf["model_version"]]
    perf["valid_log_loss"] = [validation[v].get("log_loss", float("nan")) for v in perf["model_version"]]
    perf["decision"] = [
        performance_decision(row._asdict(), validation[row.model_version], config.auc_margin, config.log_loss_margin)
        for row in perf[["model_version", "auc", "log_loss"]].itertuples(index=False)
    ]  # one row per model version
    # The month's verdict is that of the version that scored last (the one still serving).
    latest = str(pairs.sort_values("week_start")["model_version"].iloc[-1])
    current = perf.set_index("model_version").loc[latest]
    with warehouse.get_connection() as con:
        replace_partition(con, PERFORMANCE_TABLE, perf, "target_month", month)

    context.log.info(f"{month:%Y-%m}: model {latest} realised AUC {current['auc']:.4f} "
                     f"(validation {current['valid_auc']:.4f}) -> {current['decision']}")
    yield dg.MaterializeResult(metadata=frame_metadata(perf, extra={
        "decision": dg.MetadataValue.text(str(current["decision"])),
        "model_version": dg.MetadataValue.text(latest),
        "auc": dg.MetadataValue.float(float(current["auc"])),
        "valid_auc": dg.MetadataValue.float(float(current["valid_auc"])),
        "log_loss": dg.MetadataValue.float(float(current["log_loss"])),
        "valid_log_loss": dg.MetadataValue.float(float(current["valid_log_loss"])),
        "pr_auc": dg.MetadataValue.float(float(current["pr_auc"])),
        "churn_rate": dg.MetadataValue.float(float(current["churn_rate"])),
        "n_scored": dg.MetadataValue.int(int(perf["n_scored"].sum())),
        "scored_share_of_candidates": dg.MetadataValue.float(len(pairs) / n_labels if n_labels else 0.0),
    }))


monitoring_assets = [drift_report, model_performance]

performance_job = dg.define_asset_job(
    "performance_job",
    selection=dg.AssetSelection.assets(model_performance),
    partitions_def=monthly_partitions,
    description="Realised model performance for a target month once its labels are final.",
)
