"""MLflow 3 side of the model: log a training run, register it, and gate promotions.

Aliases replace the old stages: `staging` = passed the automated tests (floors relative to
the base rate, the logistic baseline, schema), `production` = passed acceptance: a paired
bootstrap non-inferiority test against the incumbent on the challenger's validation month,
which must be the newest final labelled month (churn_assets.model.gate holds the maths).
A version only ever gets `production` while it carries the tag gate.automated=passed,
re-read right before the alias moves; a version trained on the same data and recipe as
production (same training_fingerprint) is refused. Every decision is written as version
tags and (by the caller, with `record_promotion`) as a row of ml.model_promotions.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")  # no display in workers
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from churn_assets.features.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS  # noqa: E402
from churn_assets.model import gate  # noqa: E402
from churn_assets.model.pyfunc import PREDICT_COLUMNS, PREDICT_PARAMS, ChurnModel  # noqa: E402
from churn_assets.model.training import RUNTIME_PARAMS, TARGET, TrainingResult, evaluate  # noqa: E402
from churn_assets.settings import paths_from_env  # noqa: E402

EXPERIMENT = "churn"
MODEL_NAME = "churn_model"
STAGING, PRODUCTION = "staging", "production"
TAG_AUTOMATED = "gate.automated"
TAG_ACCEPTANCE = "gate.acceptance"
PASSED, FAILED = "passed", "failed"
# Version tags naming the data a version learned: the newest labelled month in its
# training window (validation month included once the recipe is refit on it), and a
# fingerprint of data + parameters (two versions with the same one are the same model).
TAG_TRAINED_THROUGH = "trained_through"
TAG_FINGERPRINT = "training_fingerprint"
METRIC_NAMES = ("auc", "pr_auc", "log_loss", "brier", "ece", "recall_a", "precision_a", "lift_top_decile")
# artifact downloads here are a few small files: their tqdm bars only clutter run logs
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REFERENCE_FEATURES = "reference/reference_features.parquet"
VALIDATION_SCORES = "reference/validation_scores.parquet"
FEATURE_IMPORTANCE = "evaluation/feature_importance.csv"


def pip_requirements() -> list[str]:
    """Pinned from the running environment (MLflow's own inference costs seconds per call).
    The model class lives in this package, so serving needs churn-assets installed too."""
    pins = []
    for dist in ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "cloudpickle", "churn-assets"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # running from a source checkout
            pins.append(dist)
    return pins


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    details: dict = field(default_factory=dict)  # challenger/incumbent metrics for ml.model_promotions


@dataclass
class TrainingEvidence:
    """What the gate needs from a training run when the TrainingResult is gone (a later step)."""

    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    validation_predictions: pd.DataFrame
    reference_sample: pd.DataFrame
    model: ChurnModel | None = None
    feature_importance: pd.DataFrame | None = None  # feature, gain, split (the drift weights)
    tags: dict[str, str] = field(default_factory=dict)  # the version's tags (valid_month, trained_through, ...)


@dataclass(frozen=True)
class LoggedTraining:
    run_id: str
    version: str
    model_uri: str


# ---------------------------------------------------------------- experiment and logging

def ensure_experiment(tracking_uri: str, artifact_location: str | None = None, name: str = EXPERIMENT) -> str:
    """Id of experiment `name`, created with an explicit artifact location when missing
    (sqlite stores would otherwise put artifacts under the working directory)."""
    if tracking_uri.startswith("sqlite:///"):  # sqlite will not create the folder itself
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_location or paths_from_env().mlflow_artifact_location
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent run
        return client.get_experiment_by_name(name).experiment_id


def _importance_figure(importance: pd.DataFrame, top: int = 20):
    head = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(head) + 1.2))
    ax.barh(head["feature"], head["gain"])
    ax.set_xlabel("total gain")
    ax.set_title("LightGBM feature importance")
    fig.tight_layout()
    return fig


def _calibration_figure(curve: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    ax.plot(curve["mean_predicted"], curve["observed_rate"], marker="o", label="model")
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Calibration on the validation month")
    ax.legend()
    fig.tight_layout()
    return fig


def _set_tracking(tracking_uri: str | None) -> None:
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)


def log_training(
    result: TrainingResult,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> LoggedTraining:
    """Log params, metrics, plots, drift reference and the pyfunc model into the active MLflow
    run (the dagster-mlflow one) or a new run of experiment `churn`; register a new version of
    `churn_model`. Returns run id, version number (string) and the version's model URI."""
    _set_tracking(tracking_uri)
    experiment_id = ensure_experiment(mlflow.get_tracking_uri(), artifact_location)
    own_run = mlflow.active_run() is None
    run = mlflow.start_run(experiment_id=experiment_id) if own_run else mlflow.active_run()
    try:
        mlflow.log_params({
            **result.params,
            "train_months": ",".join(m.isoformat() for m in result.train_months),
            "valid_month": result.valid_month.isoformat(),
            "trained_through": result.trained_through.isoformat(),
            "best_iteration": result.best_iteration,
            "holdout_iteration": result.holdout_iteration,
            "runtime.num_threads": result.num_threads,  # not part of the recipe (params.json)
        })
        mlflow.log_metrics({
            **{f"valid_{k}": v for k, v in result.metrics.items()},
            **{f"baseline_{k}": v for k, v in result.baseline_metrics.items()},
        })
        mlflow.set_tags(tags or {})
        mlflow.log_dict(result.params, "params.json")
        for name, fig in (
            ("plots/feature_importance.png", _importance_figure(result.feature_importance)),
            ("plots/calibration.png", _calibration_figure(result.calibration_curve)),
        ):
            mlflow.log_figure(fig, name)
            plt.close(fig)
        with tempfile.TemporaryDirectory() as tmp:
            for rel, frame in (
                (REFERENCE_FEATURES, result.reference_sample),
                (VALIDATION_SCORES, result.validation_predictions),
                (FEATURE_IMPORTANCE, result.feature_importance),
                ("evaluation/calibration_curve.csv", result.calibration_curve),
            ):
                path = Path(tmp) / Path(rel).name
                frame.to_parquet(path, index=False) if rel.endswith(".parquet") else frame.to_csv(path, index=False)
                mlflow.log_artifact(str(path), artifact_path=str(Path(rel).parent))

        sample = result.reference_sample[FEATURE_COLUMNS].head(200)  # the reference also has target_month
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=result.model,
            signature=infer_signature(sample, result.model.predict(None, sample), params=PREDICT_PARAMS),
            pip_requirements=pip_requirements(),
            registered_model_name=MODEL_NAME,
        )
        version = str(info.registered_model_version)
        client = MlflowClient(mlflow.get_tracking_uri())
        for key, value in {
            "valid_month": result.valid_month.isoformat(),
            "train_months": ",".join(m.isoformat() for m in result.train_months),
            TAG_TRAINED_THROUGH: result.trained_through.isoformat(),
            TAG_FINGERPRINT: result.fingerprint,
            **(tags or {}),
        }.items():
            client.set_model_version_tag(MODEL_NAME, version, key, str(value))
        return LoggedTraining(run.info.run_id, version, f"models:/{MODEL_NAME}/{version}")
    finally:
        if own_run:
            mlflow.end_run()


# ---------------------------------------------------------------- loading

def _load_pyfunc(client: MlflowClient, version: str) -> mlflow.pyfunc.PyFuncModel:
    """A registered version loaded from its artifact location, so it does not depend on the
    process-wide tracking URI."""
    return mlflow.pyfunc.load_model(client.get_model_version_download_uri(MODEL_NAME, str(version)))


def load_version(client: MlflowClient, version: str) -> ChurnModel:
    return _load_pyfunc(client, version).unwrap_python_model()


def alias_version(client: MlflowClient, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def load_production(tracking_uri: str | None = None) -> tuple[ChurnModel, str]:
    """(model, version) behind models:/churn_model@production. The alias is resolved once and
    that version loaded, so the pair is consistent even if the alias moves meanwhile."""
    client = MlflowClient(tracking_uri or paths_from_env().mlflow_tracking_uri)
    version = alias_version(client, PRODUCTION)
    if version is None:
        raise LookupError(f"registered model {MODEL_NAME!r} has no {PRODUCTION!r} alias yet: train and promote a model first")
    return load_version(client, version), version


def production_params(client: MlflowClient) -> dict | None:
    """The production version's training recipe (params.json of its run), or None. Runtime
    settings that older runs persisted (num_threads) are dropped: the next run's config sets them."""
    version = alias_version(client, PRODUCTION)
    if version is None:
        return None
    run_id = client.get_model_version(MODEL_NAME, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        params = json.loads(Path(client.download_artifacts(run_id, "params.json", tmp)).read_text())
    return {k: v for k, v in params.items() if k not in RUNTIME_PARAMS}


def trained_through(tags: dict[str, str]) -> str:
    """ISO date of the newest labelled month a version learned from its tags ('' unknown).
    Versions logged before the tag existed learned up to their validation month's predecessor;
    their valid_month is the safe upper bound."""
    return tags.get(TAG_TRAINED_THROUGH) or tags.get("valid_month", "")


def validation_scores(client: MlflowClient, version: str) -> pd.DataFrame:
    """msno, churn_probability, is_churn: the hold-out predictions logged with `version`."""
    run_id = client.get_model_version(MODEL_NAME, str(version)).run_id
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, VALIDATION_SCORES, tmp))


def training_evidence(client: MlflowClient, version: str) -> TrainingEvidence:
    """Metrics and reference artifacts of the run that produced `version`."""
    model_version = client.get_model_version(MODEL_NAME, str(version))
    run = client.get_run(model_version.run_id)
    m = run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        ref = pd.read_parquet(client.download_artifacts(run.info.run_id, REFERENCE_FEATURES, tmp))
        val = pd.read_parquet(client.download_artifacts(run.info.run_id, VALIDATION_SCORES, tmp))
        try:
            importance = pd.read_csv(client.download_artifacts(run.info.run_id, FEATURE_IMPORTANCE, tmp))
        except (MlflowException, OSError):  # a run logged before importance was an artifact
            importance = None
    return TrainingEvidence(
        metrics={k: m[f"valid_{k}"] for k in METRIC_NAMES if f"valid_{k}" in m},
        baseline_metrics={k: m[f"baseline_{k}"] for k in METRIC_NAMES if f"baseline_{k}" in m},
        validation_predictions=val,
        reference_sample=ref,
        feature_importance=importance,
        tags=dict(model_version.tags),
    )


# ---------------------------------------------------------------- gates

def _tag(client: MlflowClient, version: str, tags: dict[str, object]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, str(version), key, str(value)[:4900])


def _expected_type(column: str) -> str:
    return "string" if column in CATEGORICAL_COLUMNS else "double"


def _signature_problems(model: mlflow.pyfunc.PyFuncModel, sample: pd.DataFrame) -> list[str]:
    schema = model.metadata.get_input_schema()
    if schema is None:
        return ["model has no input signature"]
    spec = {c.name: str(c.type) for c in schema.inputs}
    problems = []
    if list(spec) != FEATURE_COLUMNS:
        problems.append(f"signature columns differ from FEATURE_COLUMNS: {sorted(set(spec) ^ set(FEATURE_COLUMNS))}")
    wrong = [f"{c}:{spec[c]}" for c in FEATURE_COLUMNS if c in spec and _expected_type(c) not in spec[c].lower()]
    if wrong:
        problems.append(f"signature types differ from the feature contract: {wrong}")
    try:  # the schema-enforcing pyfunc path must accept feature-store rows
        out = model.predict(sample)
        if list(out.columns) != PREDICT_COLUMNS or len(out) != len(sample):
            problems.append(f"pyfunc predict does not return one row of {PREDICT_COLUMNS} per input row")
    except Exception as exc:  # noqa: BLE001 - any failure here is a gate refusal, with its text
        problems.append(f"pyfunc predict rejects feature-store rows: {exc}")
    return problems


def _probability_problems(p: np.ndarray, where: str) -> list[str]:
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        return [f"no probabilities on {where}"]
    bad = int((~np.isfinite(p) | (p < 0) | (p > 1)).sum())
    return [f"{bad} missing or out-of-range probabilities on {where}"] if bad else []


def automated_tests(
    client: MlflowClient,
    version: str,
    result: TrainingResult | TrainingEvidence,
    min_auc_lift: float = gate.MIN_AUC_LIFT,
    min_log_loss_gain: float = gate.MIN_LOG_LOSS_GAIN,
    baseline_margin: float = 0.0,
) -> GateDecision:
    """Schema, sanity, floors and the baseline, on the registered artifact itself. Pass: tag
    gate.automated=passed and move alias `staging`; fail: tag failed with the reasons.
    Floors are relative to the validation month's base rate: log loss at least
    `min_log_loss_gain` (a fraction) below the constant forecast's, AUC above 0.5 +
    `min_auc_lift`. The AUC must exceed the baseline's + `baseline_margin` (0: strictly beat it)."""
    version = str(version)
    pyfunc_model = _load_pyfunc(client, version)
    sample = result.reference_sample[FEATURE_COLUMNS].head(1000)  # the reference also has target_month
    reasons = _signature_problems(pyfunc_model, sample.head(50))
    validation = result.validation_predictions
    reasons += _probability_problems(validation["churn_probability"], "the validation month")
    p_loaded = pyfunc_model.unwrap_python_model().predict_proba(sample)
    reasons += _probability_problems(p_loaded, "the reference sample")
    in_memory = getattr(result, "model", None)
    if in_memory is not None and not np.allclose(p_loaded, in_memory.predict_proba(sample), atol=1e-9):
        reasons.append("the registered artifact does not reproduce the trained model's probabilities")
    auc, ll = result.metrics.get("auc", float("nan")), result.metrics.get("log_loss", float("nan"))
    base_auc = result.baseline_metrics.get("auc", float("nan"))
    y = validation["is_churn"].to_numpy(dtype=float)
    reasons += gate.floor_problems(auc, ll, y, min_auc_lift, min_log_loss_gain)
    if not auc > base_auc + baseline_margin:
        reasons.append(f"validation AUC {auc:.4f} does not beat the logistic baseline {base_auc:.4f}"
                       + (f" by {baseline_margin:+.3f}" if baseline_margin else ""))

    passed = not reasons
    details = {"challenger_auc": auc, "challenger_log_loss": ll, "baseline_auc": base_auc,
               "base_rate_log_loss": gate.base_rate_log_loss(y)}
    _tag(client, version, {
        TAG_AUTOMATED: PASSED if passed else FAILED,
        f"{TAG_AUTOMATED}.reason": "; ".join(reasons) or "all automated tests passed",
        f"{TAG_AUTOMATED}.decided_at": _now().isoformat(),
    })
    if passed:
        client.set_registered_model_alias(MODEL_NAME, STAGING, version)
    return GateDecision(passed, reasons or ["all automated tests passed"], details)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def promote(client: MlflowClient, version: str, alias: str = PRODUCTION) -> bool:
    """Move `alias` to `version` only if the version is tagged gate.automated=passed, read
    fresh from the registry right before the move (a racing run cannot slip a failed one in)."""
    fresh = client.get_model_version(MODEL_NAME, str(version))
    if fresh.tags.get(TAG_AUTOMATED) != PASSED:
        return False
    client.set_registered_model_alias(MODEL_NAME, alias, str(version))
    return True


def _iso_date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _incumbent_predictions(
    client: MlflowClient, incumbent: str, month: dt.date, rows: pd.DataFrame, frame: pd.DataFrame | None
) -> tuple[pd.Series | None, str]:
    """The incumbent's probabilities on the challenger's validation rows (aligned on `rows`,
    NaN where it has none), and where they come from; (None, reason) when no fair pairing
    exists. Out of sample either way: a version that learned only months before `month` is
    scored on its feature rows; a version validated on `month` itself (it was refit on it
    after) contributes its own logged hold-out predictions."""
    tags = client.get_model_version(MODEL_NAME, incumbent).tags
    through, valid = _iso_date(trained_through(tags)), _iso_date(tags.get("valid_month"))
    if through is not None and through < month:
        if frame is None or frame.empty or "msno" not in frame:
            return None, f"no feature rows of {month} to score production v{incumbent} on"
        features = frame.drop_duplicates("msno").set_index("msno")
        present = rows["msno"].isin(features.index).to_numpy()
        p = pd.Series(np.nan, index=rows.index)
        if present.any():
            scored = features.loc[rows["msno"].to_numpy()[present]].reset_index(drop=True)
            p.iloc[np.flatnonzero(present)] = load_version(client, incumbent).predict_proba(scored)
        return p, f"production v{incumbent} (trained through {through}) scored on {month}"
    if valid == month:
        logged = validation_scores(client, incumbent).drop_duplicates("msno").set_index("msno")["churn_probability"]
        return pd.Series(logged.reindex(rows["msno"]).to_numpy(), index=rows.index), \
            f"production v{incumbent}'s own hold-out predictions of {month}"
    return None, (f"stale window: production v{incumbent} already learned through {through} (validated on "
                  f"{valid}), the challenger is validated on {month}: comparing there would grade production "
                  "on data it learned")


def acceptance(
    client: MlflowClient,
    version: str,
    frame: pd.DataFrame | None,
    acceptance_month: dt.date | None = None,
    auc_margin: float = gate.AUC_MARGIN,
    log_loss_margin: float = gate.LOG_LOSS_MARGIN,
    n_bootstrap: int = gate.N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = gate.CONFIDENCE,
) -> GateDecision:
    """Challenger vs the current production version on the challenger's validation month V,
    which must be `acceptance_month`, the newest final labelled month (default: the newest
    target_month of `frame`, that month's feature rows). The challenger's predictions are its
    logged hold-out predictions; the incumbent's see _incumbent_predictions. Promote when the
    paired bootstrap (gate.non_inferiority) bounds the losses within the margins; refuse a
    stale window or a version identical to production (same training_fingerprint). The first
    model is promoted when it passed the automated tests. Tags the version with the decision."""
    version = str(version)
    incumbent = alias_version(client, PRODUCTION)
    tags = client.get_model_version(MODEL_NAME, version).tags
    month = _iso_date(tags.get("valid_month"))
    if acceptance_month is None and frame is not None and len(frame):
        acceptance_month = _iso_date(str(max(frame["target_month"])))
    challenger = validation_scores(client, version)
    y = challenger[TARGET].to_numpy(dtype=float)
    own = evaluate(y, challenger["churn_probability"].to_numpy())
    details: dict = {
        "challenger_auc": own["auc"], "challenger_log_loss": own["log_loss"],
        "incumbent_version": incumbent, "incumbent_auc": None, "incumbent_log_loss": None,
        "acceptance_month": (acceptance_month or month).isoformat() if (acceptance_month or month) else None,
        "challenger_trained_through": trained_through(tags) or None,
        "delta_auc_low": None, "delta_log_loss_high": None,
    }
    reasons: list[str] = []
    result: gate.NonInferiority | None = None
    if tags.get(TAG_AUTOMATED) != PASSED:
        reasons.append("the version did not pass the automated tests")
    elif incumbent == version:
        return GateDecision(True, [f"version {version} is already production"], details)
    elif incumbent is not None:
        inc_tags = client.get_model_version(MODEL_NAME, incumbent).tags
        fingerprint = tags.get(TAG_FINGERPRINT)
        if fingerprint and fingerprint == inc_tags.get(TAG_FINGERPRINT):
            reasons.append(f"identical to production v{incumbent}: same training data and parameters "
                           f"(training_fingerprint {fingerprint})")
        elif month is None or acceptance_month is None or month != acceptance_month:
            reasons.append(f"stale window: validated on {month}, but the newest final labelled month is "
                           f"{acceptance_month}; retrain on the newest months")
        else:
            p_inc, source = _incumbent_predictions(client, incumbent, month, challenger, frame)
            paired = None if p_inc is None else p_inc.notna().to_numpy()
            if p_inc is None:
                reasons.append(source)
            elif paired.sum() < 0.9 * len(challenger) or len(np.unique(y[paired])) < 2:
                reasons.append(f"only {int(paired.sum())} of the challenger's {len(challenger)} validation rows "
                               f"have a prediction from {source}")
            else:
                yp, pc, pi = y[paired], challenger["churn_probability"].to_numpy()[paired], p_inc.to_numpy()[paired]
                result = gate.non_inferiority(yp, pc, pi, auc_margin, log_loss_margin, n_bootstrap, seed, confidence)
                mine, prod = evaluate(yp, pc), evaluate(yp, pi)
                details.update(challenger_auc=mine["auc"], challenger_log_loss=mine["log_loss"],
                               incumbent_auc=prod["auc"], incumbent_log_loss=prod["log_loss"],
                               delta_auc_low=result.delta_auc_low, delta_log_loss_high=result.delta_log_loss_high)
                verdict = "non-inferior to" if result.passed else "inferior to"
                reasons.append(f"{verdict} production v{incumbent} on {month} ({source}): {result.describe()}")
    passed = not reasons or (result is not None and result.passed)
    if passed and not promote(client, version, PRODUCTION):
        passed, reasons = False, ["the version lost its gate.automated=passed tag before promotion"]
    if passed and incumbent is None:
        reasons = ["first production model"]
    _tag(client, version, {
        TAG_ACCEPTANCE: PASSED if passed else FAILED,
        f"{TAG_ACCEPTANCE}.reason": "; ".join(reasons),
        f"{TAG_ACCEPTANCE}.decided_at": _now().isoformat(),
        f"{TAG_ACCEPTANCE}.month": details["acceptance_month"] or "unknown",
        f"{TAG_ACCEPTANCE}.auc": round(details["challenger_auc"], 6),
        f"{TAG_ACCEPTANCE}.log_loss": round(details["challenger_log_loss"], 6),
        **({f"{TAG_ACCEPTANCE}.delta_auc_low": round(result.delta_auc_low, 6),
            f"{TAG_ACCEPTANCE}.delta_log_loss_high": round(result.delta_log_loss_high, 6)} if result else {}),
    })
    return GateDecision(passed, reasons, details)


# ---------------------------------------------------------------- promotion log

PROMOTIONS_DDL = """
CREATE SCHEMA IF NOT EXISTS ml;
CREATE TABLE IF NOT EXISTS ml.model_promotions (
    decided_at TIMESTAMP NOT NULL,
    model_version VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,          -- 'staging' / 'production'
    decision VARCHAR NOT NULL,       -- 'promoted' / 'refused'
    reason VARCHAR,
    challenger_auc DOUBLE,
    challenger_log_loss DOUBLE,
    incumbent_version VARCHAR,
    incumbent_auc DOUBLE,
    incumbent_log_loss DOUBLE
);
"""
PROMOTION_COLUMNS = (
    "decided_at", "model_version", "stage", "decision", "reason", "challenger_auc",
    "challenger_log_loss", "incumbent_version", "incumbent_auc", "incumbent_log_loss",
)


def promotion_row(version: str, stage: str, decision: GateDecision) -> dict:
    """A ml.model_promotions row from a gate decision."""
    d = decision.details
    return {
        "decided_at": _now(),
        "model_version": str(version),
        "stage": stage,
        "decision": "promoted" if decision.passed else "refused",
        "reason": "; ".join(decision.reasons),
        "challenger_auc": d.get("challenger_auc"),
        "challenger_log_loss": d.get("challenger_log_loss"),
        "incumbent_version": d.get("incumbent_version"),
        "incumbent_auc": d.get("incumbent_auc"),
        "incumbent_log_loss": d.get("incumbent_log_loss"),
    }


def record_promotion(con: duckdb.DuckDBPyConnection, row: dict) -> None:
    """Append one decision to ml.model_promotions (created on first use)."""
    if row.get("stage") not in (STAGING, PRODUCTION) or row.get("decision") not in ("promoted", "refused"):
        raise ValueError(f"bad promotion row: stage={row.get('stage')!r} decision={row.get('decision')!r}")
    con.execute(PROMOTIONS_DDL)
    values = [row.get(c) for c in PROMOTION_COLUMNS]
    values[0] = values[0] or _now()
    con.execute(
        f"INSERT INTO ml.model_promotions ({', '.join(PROMOTION_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )
